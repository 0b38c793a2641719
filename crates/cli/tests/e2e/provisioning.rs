//! End-to-end tests of outbound provisioning on the real binary: the transactional outbox
//! fanned out by the dispatcher to real local SCIM targets — a second fedkey directory and
//! the reference Python server `scim2-server` — and to a local fake target that injects
//! failures (500s, 429 with Retry-After, 409 on create, 404 on update, an outage). Every
//! delivery is triggered by the test tick endpoint; time moves through the test clock.

#[allow(unused_imports)]
use super::*;

use std::collections::{BTreeMap, HashMap};

use reqwest::Method as M;

// ---------------------------------------------------------------- helpers

impl Server {
    pub(super) async fn sync_tick(&self) -> Value {
        let (st, v) = self.api(M::POST, "/api/v1/test/sync/tick", Some(&self.token), None).await;
        assert_eq!(st, 200, "{v}");
        v["report"].clone()
    }

    pub(super) async fn sync_status(&self, dir: &str) -> Value {
        let (st, v) =
            self.api(M::GET, &format!("/api/v1/directories/{dir}/sync/status"), Some(&self.token), None).await;
        assert_eq!(st, 200, "{v}");
        v
    }

    /// `fedkey sync target set DIR/TRUST --url URL [--mapping-file] [extra…]`.
    pub(super) fn set_target(&self, trust: &str, url: &str, mapping: Option<Value>, extra: &[&str]) -> Value {
        let mut args = vec!["sync", "target", "set", trust, "--url", url];
        let file = self.dir.path().join(format!("mapping-{}.json", trust.replace('/', "-")));
        let f = file.to_str().unwrap().to_owned();
        if let Some(m) = mapping {
            std::fs::write(&file, m.to_string()).unwrap();
            args.extend(["--mapping-file", &f]);
        }
        args.extend(extra);
        self.cli_json(&args)
    }
}

/// Creates an outbound trust through the API (its key is the application's).
pub(super) async fn outbound_trust(s: &Server, dir: &str, name: &str, key: &str) {
    let (st, v) = s
        .api(
            M::POST,
            &format!("/api/v1/directories/{dir}/trusts"),
            Some(&s.token),
            Some(json!({"name": name, "direction": "outbound", "key": key})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
}

/// Creates a directory with an inbound trust; returns its SCIM key.
pub(super) async fn directory_with_inbound(s: &Server, dir: &str, trust: &str) -> String {
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

pub(super) fn user_body(name: &str, title: &str) -> Value {
    json!({
        "schemas": [USER_URN], "userName": name, "active": true, "title": title,
        "name": {"givenName": name.split('@').next().unwrap(), "familyName": "Example"},
        "emails": [{"value": name, "type": "work", "primary": true}],
    })
}

pub(super) fn ids_of(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .get("members")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|m| m["value"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// Reads a SCIM target back with a bearer token (fedkey's own or scim2-server).
pub(super) struct Reader {
    pub(super) base: String,
    pub(super) token: String,
}

impl Reader {
    pub(super) async fn get(&self, path: &str) -> (u16, Value) {
        let resp =
            reqwest::Client::new().get(format!("{}{path}", self.base)).bearer_auth(&self.token).send().await.unwrap();
        let st = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (st, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub(super) async fn list(&self, endpoint: &str) -> Vec<Value> {
        let (st, v) = self.get(&format!("/{endpoint}?count=200")).await;
        assert_eq!(st, 200, "{v}");
        v["Resources"].as_array().cloned().unwrap_or_default()
    }

    /// The one resource with this externalId (fails on duplicates).
    pub(super) async fn by_external_id(&self, endpoint: &str, ext: &str) -> Option<Value> {
        let all = self.list(endpoint).await;
        let found: Vec<&Value> = all.iter().filter(|r| r["externalId"] == ext).collect();
        assert!(found.len() <= 1, "duplicate {endpoint} for {ext}: {found:?}");
        found.first().map(|v| (*v).clone())
    }

    pub(super) async fn by_name(&self, endpoint: &str, attr: &str, name: &str) -> Option<Value> {
        let all = self.list(endpoint).await;
        let found: Vec<&Value> =
            all.iter().filter(|r| r[attr].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name))).collect();
        assert!(found.len() <= 1, "duplicate {endpoint} named {name}: {found:?}");
        found.first().map(|v| (*v).clone())
    }
}

// ---------------------------------------------------------------- scim2-server

pub(super) const REF_TOKEN: &str = "reference-server-bearer-token-456";

pub(super) struct RefServer(Child);

impl Drop for RefServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scim2_bin() -> Option<PathBuf> {
    let p = match std::env::var("FEDKEY_SCIM2_SERVER_BIN") {
        Ok(p) => PathBuf::from(p),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv-conformance/bin/scim2-server"),
    };
    p.exists().then_some(p)
}

fn start_scim2(bin: &Path) -> (RefServer, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(bin)
        .args(["--hostname", "127.0.0.1", "--port", &port.to_string(), "--bearer-token", REF_TOKEN])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let stdout = child.stdout.take().unwrap();
    let server = RefServer(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert!(line.starts_with("Serving SCIM on"), "unexpected banner {line:?}");
    (server, format!("http://127.0.0.1:{port}/v2"))
}

// ---------------------------------------------------------------- fake target

#[derive(Clone, Debug)]
enum Act {
    Status(u16, Option<u64>),
    /// Creates the resource (as a concurrent writer would) but answers 409.
    RaceConflict,
    /// Deletes the resource (as someone at the application would) and answers 404.
    DeleteThen404,
    /// Answers normally, but only after this many milliseconds.
    Stall(u64),
}

#[derive(Default)]
struct FakeState {
    users: BTreeMap<String, Value>,
    groups: BTreeMap<String, Value>,
    next: u64,
    /// (method, path prefix, action, remaining times)
    inject: Vec<(String, String, Act, usize)>,
    /// Every request answers 503 while set.
    down: bool,
    log: Vec<String>,
    /// Advertise ETags: resources carry `meta.version`, a stale `If-Match` gets 412.
    etag: bool,
    /// The `If-Match` of every PATCH and PUT (with `etag` set).
    if_match: Vec<Option<String>>,
    /// (method, path prefix, arrived, release): the next matching request says it has
    /// arrived, then waits to be released.
    hold: Option<(String, String, Arc<tokio::sync::Notify>, Arc<tokio::sync::Notify>)>,
}

struct Fake {
    url: String,
    st: Arc<Mutex<FakeState>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Fake {
    fn inject(&self, method: &str, prefix: &str, act: Act, times: usize) {
        self.st.lock().unwrap().inject.push((method.into(), prefix.into(), act, times));
    }

    fn clear(&self) {
        self.st.lock().unwrap().inject.clear();
    }

    /// Holds the next `method` request under `prefix` until released; returns (arrived,
    /// release).
    fn hold(&self, method: &str, prefix: &str) -> (Arc<tokio::sync::Notify>, Arc<tokio::sync::Notify>) {
        let (arrived, release) = (Arc::new(tokio::sync::Notify::new()), Arc::new(tokio::sync::Notify::new()));
        self.st.lock().unwrap().hold = Some((method.into(), prefix.into(), arrived.clone(), release.clone()));
        (arrived, release)
    }

    fn set_down(&self, down: bool) {
        self.st.lock().unwrap().down = down;
    }

    fn users(&self) -> Vec<Value> {
        self.st.lock().unwrap().users.values().cloned().collect()
    }

    fn user_by_ext(&self, ext: &str) -> Option<Value> {
        let users = self.users();
        let found: Vec<&Value> = users.iter().filter(|u| u["externalId"] == ext).collect();
        assert!(found.len() <= 1, "duplicates at the fake: {found:?}");
        found.first().map(|v| (*v).clone())
    }

    fn delete_user(&self, id: &str) {
        self.st.lock().unwrap().users.remove(id);
    }

    fn count(&self, method: &str) -> usize {
        self.st.lock().unwrap().log.iter().filter(|l| l.starts_with(method)).count()
    }
}

fn scim_json(status: u16, v: Value) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut r = (axum::http::StatusCode::from_u16(status).unwrap(), axum::Json(v)).into_response();
    r.headers_mut().insert("content-type", "application/scim+json".parse().unwrap());
    r
}

fn scim_error(status: u16, scim_type: Option<&str>, detail: &str) -> axum::response::Response {
    let mut v = json!({"schemas": [ERROR_URN], "status": status.to_string(), "detail": detail});
    if let Some(t) = scim_type {
        v["scimType"] = json!(t);
    }
    scim_json(status, v)
}

async fn fake_target(token: &'static str) -> Fake {
    let st: Arc<Mutex<FakeState>> = Arc::default();
    let s2 = st.clone();
    let app = axum::Router::new().fallback(
        move |method: axum::http::Method,
              uri: axum::http::Uri,
              headers: axum::http::HeaderMap,
              axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
              body: String| {
            let st = s2.clone();
            async move {
                let stall = {
                    let mut g = st.lock().unwrap();
                    let m = method.as_str().to_owned();
                    g.inject.iter_mut().find_map(|inj| match inj.2 {
                        Act::Stall(ms) if inj.0 == m && uri.path().starts_with(&inj.1) && inj.3 > 0 => {
                            inj.3 -= 1;
                            Some(ms)
                        }
                        _ => None,
                    })
                };
                if let Some(ms) = stall {
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                }
                let held = {
                    let mut g = st.lock().unwrap();
                    let hit = g.hold.as_ref().is_some_and(|h| h.0 == method.as_str() && uri.path().starts_with(&h.1));
                    if hit { g.hold.take() } else { None }
                };
                if let Some((_, _, arrived, release)) = held {
                    arrived.notify_one();
                    release.notified().await;
                }
                fake_handle(&st, token, &method, uri.path(), &headers, &q, &body)
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Fake { url, st, _task: task }
}

fn fake_handle(
    st: &Mutex<FakeState>,
    token: &str,
    method: &axum::http::Method,
    path: &str,
    headers: &axum::http::HeaderMap,
    q: &HashMap<String, String>,
    body: &str,
) -> axum::response::Response {
    use fedkey_scim::schema::resource_type;
    let mut guard = st.lock().unwrap();
    let s: &mut FakeState = &mut guard;
    s.log.push(format!("{method} {path}"));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {token}")) {
        return scim_error(401, None, "bad token");
    }
    if s.down {
        return scim_error(503, None, "down for maintenance");
    }
    let m = method.as_str().to_owned();
    let mut act = None;
    for inj in s.inject.iter_mut() {
        if inj.0 == m && path.starts_with(&inj.1) && inj.3 > 0 && !matches!(inj.2, Act::Stall(_)) {
            inj.3 -= 1;
            act = Some(inj.2.clone());
            break;
        }
    }
    if let Some(Act::Status(code, ra)) = &act {
        let mut r = scim_error(*code, None, "injected");
        if let Some(secs) = ra {
            r.headers_mut().insert("retry-after", secs.to_string().parse().unwrap());
        }
        return r;
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (m.as_str(), parts.as_slice()) {
        ("GET", ["ServiceProviderConfig"]) => scim_json(
            200,
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
                "patch": {"supported": true}, "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
                "filter": {"supported": true, "maxResults": 200}, "changePassword": {"supported": false},
                "sort": {"supported": false}, "etag": {"supported": s.etag}, "authenticationSchemes": []}),
        ),
        ("GET", [_]) if !matches!(parts[0], "Users" | "Groups") => scim_error(404, None, "no such endpoint"),
        (_, [ep, rest @ ..]) if matches!(*ep, "Users" | "Groups") => {
            let rt = resource_type(if *ep == "Users" { "User" } else { "Group" }).unwrap();
            let name_attr = if *ep == "Users" { "userName" } else { "displayName" };
            let is_users = *ep == "Users";
            let map = if is_users { &mut s.users } else { &mut s.groups };
            match (m.as_str(), rest) {
                ("GET", []) => {
                    let mut items: Vec<Value> = map.values().cloned().collect();
                    if let Some(f) = q.get("filter") {
                        let f = fedkey_scim::filter::parse(f).unwrap();
                        items.retain(|r| fedkey_scim::eval::matches(rt, r, &f).unwrap_or(false));
                    }
                    scim_json(
                        200,
                        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                            "totalResults": items.len(), "startIndex": 1, "itemsPerPage": items.len(), "Resources": items}),
                    )
                }
                ("POST", []) => {
                    let v: Value = serde_json::from_str(body).unwrap();
                    let name = v[name_attr].as_str().unwrap_or("").to_lowercase();
                    let exists = map.values().any(|r| r[name_attr].as_str().is_some_and(|n| n.to_lowercase() == name));
                    if exists {
                        return scim_error(409, Some("uniqueness"), "exists");
                    }
                    s.next += 1;
                    let id = format!("{}-{}", if is_users { "u" } else { "g" }, s.next);
                    let mut v = v;
                    v["id"] = json!(id);
                    if s.etag {
                        v["meta"] = json!({"version": format!("W/\"{}\"", s.next)});
                    }
                    let map = if is_users { &mut s.users } else { &mut s.groups };
                    map.insert(id, v.clone());
                    if matches!(act, Some(Act::RaceConflict)) {
                        return scim_error(409, Some("uniqueness"), "created concurrently");
                    }
                    scim_json(201, v)
                }
                ("GET", [id]) => match map.get(*id) {
                    Some(v) => scim_json(200, v.clone()),
                    None => scim_error(404, None, "not found"),
                },
                ("PATCH", [id]) => {
                    if matches!(act, Some(Act::DeleteThen404)) {
                        map.remove(*id);
                        return scim_error(404, None, "deleted");
                    }
                    let Some(cur) = map.get_mut(*id) else { return scim_error(404, None, "not found") };
                    if s.etag {
                        let sent = headers.get("if-match").and_then(|v| v.to_str().ok()).map(str::to_owned);
                        s.if_match.push(sent.clone());
                        if sent.is_some_and(|e| Some(e.as_str()) != cur["meta"]["version"].as_str()) {
                            return scim_error(412, None, "changed meanwhile");
                        }
                        s.next += 1;
                        cur["meta"] = json!({"version": format!("W/\"{}\"", s.next)});
                    }
                    // A strict target: fedkey's own requests follow RFC 7644.
                    let rfc = fedkey_scim::Profile::RFC;
                    let ops = match fedkey_scim::patch::parse_request(&serde_json::from_str(body).unwrap(), &rfc) {
                        Ok(o) => o,
                        Err(e) => return scim_error(400, Some("invalidSyntax"), &e.detail),
                    };
                    if let Err(e) = fedkey_scim::patch::apply(rt, cur, &ops, &rfc) {
                        return scim_error(400, Some("invalidValue"), &e.detail);
                    }
                    scim_json(200, cur.clone())
                }
                ("PUT", [id]) => {
                    if !map.contains_key(*id) {
                        return scim_error(404, None, "not found");
                    }
                    let mut v: Value = serde_json::from_str(body).unwrap();
                    v["id"] = json!(id);
                    map.insert((*id).to_owned(), v.clone());
                    scim_json(200, v)
                }
                ("DELETE", [id]) => match map.remove(*id) {
                    Some(_) => axum::response::IntoResponse::into_response(axum::http::StatusCode::NO_CONTENT),
                    None => scim_error(404, None, "not found"),
                },
                _ => scim_error(405, None, "method not allowed"),
            }
        }
        _ => scim_error(404, None, "no such endpoint"),
    }
}

// ---------------------------------------------------------------- tests

/// Joiner, mover (attributes, groups, roles), leaver (deactivate at fedkey, delete at
/// scim2-server) and group changes arrive at both real targets, read back from them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provisioning_reaches_fedkey_and_scim2_server() {
    for b in backends() {
        let refsrv = reference_server("provisioning_reaches_fedkey_and_scim2_server").await;
        provisioning_real_targets(b, refsrv.as_ref().map(|(_, url)| url.as_str())).await;
    }
}

/// A fresh scim2-server for one run, or `None` (loudly) when it is not installed outside CI;
/// under `CI=true` a missing server fails the test.
pub(super) async fn reference_server(test: &str) -> Option<(RefServer, String)> {
    let Some(bin) = scim2_bin() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "scim2-server is not installed: set FEDKEY_SCIM2_SERVER_BIN or run scripts/test.sh"
        );
        eprintln!("*** SKIPPED scim2-server half of {test}: not installed ***");
        return None;
    };
    Some(tokio::task::spawn_blocking(move || start_scim2(&bin)).await.unwrap())
}

async fn provisioning_real_targets(b: Backend, ref_url: Option<&str>) {
    let s = Server::start(b);
    let hr = directory_with_inbound(&s, "acme", "hr").await;
    // The application: a second fedkey directory; its inbound key is acme's outbound key.
    let app_key = directory_with_inbound(&s, "app", "fedkey").await;
    outbound_trust(&s, "acme", "app", &app_key).await;
    let t = s.set_target(
        "acme/app",
        &format!("{}/scim/v2/app", s.url),
        Some(json!({"roles": [{"group": "Engineering", "assign": {"appRole": "developer"}}]})),
        &["--leaver", "deactivate"],
    );
    assert_eq!(t["target"]["auth"], "bearer", "{t}");
    if let Some(url) = ref_url {
        outbound_trust(&s, "acme", "ref", REF_TOKEN).await;
        s.set_target(
            "acme/ref",
            url,
            Some(json!({"roles": [{"group": "Engineering", "assign": {"appGroup": "eng-app"}}], "leaver": "delete"})),
            &[],
        );
    }
    let app = Reader { base: format!("{}/scim/v2/app", s.url), token: app_key.clone() };
    let refr = ref_url.map(|u| Reader { base: u.to_owned(), token: REF_TOKEN.into() });
    let acme = Scim { s: &s, dir: "acme".into(), key: hr };

    // Joiner: two users and a group with one of them.
    let alice = acme.post("/Users", user_body("alice@acme.test", "Engineer")).await;
    assert_eq!(alice.status, 201, "{}", alice.body);
    let alice_id = alice.body["id"].as_str().unwrap().to_owned();
    let bob = acme.post("/Users", user_body("bob@acme.test", "Analyst")).await;
    let bob_id = bob.body["id"].as_str().unwrap().to_owned();
    let eng = acme
        .post("/Groups", json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Engineering", "members": [{"value": alice_id}]}))
        .await;
    assert_eq!(eng.status, 201, "{}", eng.body);
    let eng_id = eng.body["id"].as_str().unwrap().to_owned();
    let r = s.sync_tick().await;
    assert!(r["delivered"].as_u64().unwrap() >= 3, "{r}");
    assert_eq!(r["dead_letters"], 0, "{r}");

    let a = app.by_external_id("Users", &alice_id).await.expect("alice at the fedkey target");
    assert_eq!((a["userName"].as_str(), a["title"].as_str()), (Some("alice@acme.test"), Some("Engineer")));
    assert_eq!(a["roles"][0]["value"], "developer", "{a}");
    let bb = app.by_external_id("Users", &bob_id).await.expect("bob at the fedkey target");
    assert!(bb.get("roles").is_none_or(|r| r.as_array().is_some_and(Vec::is_empty)), "{bb}");
    let g = app.by_external_id("Groups", &eng_id).await.expect("group at the fedkey target");
    let (_, g) = app.get(&format!("/Groups/{}", g["id"].as_str().unwrap())).await;
    assert_eq!(ids_of(&g), vec![a["id"].as_str().unwrap().to_owned()]);
    if let Some(rr) = &refr {
        let ra = rr.by_external_id("Users", &alice_id).await.expect("alice at scim2-server");
        assert_eq!(ra["title"], "Engineer");
        let rg = rr.by_name("Groups", "displayName", "Engineering").await.expect("group at scim2-server");
        assert_eq!(ids_of(&rg), vec![ra["id"].as_str().unwrap().to_owned()]);
        let app_group = rr.by_name("Groups", "displayName", "eng-app").await.expect("role group at scim2-server");
        assert_eq!(ids_of(&app_group), vec![ra["id"].as_str().unwrap().to_owned()]);
    }

    // Mover: alice's title changes; she leaves Engineering and bob joins it.
    let p = acme
        .patch(&format!("/Users/{alice_id}"), json!([{"op": "replace", "path": "title", "value": "Staff Engineer"}]))
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    let p = acme
        .patch(
            &format!("/Groups/{eng_id}"),
            json!([{"op": "remove", "path": format!("members[value eq \"{alice_id}\"]")}, {"op": "add", "path": "members", "value": [{"value": bob_id}]}]),
        )
        .await;
    assert!(p.status == 200 || p.status == 204, "{}", p.body);
    let r = s.sync_tick().await;
    assert_eq!(r["dead_letters"], 0, "{r}");
    let a = app.by_external_id("Users", &alice_id).await.unwrap();
    assert_eq!(a["title"], "Staff Engineer");
    assert!(a.get("roles").is_none_or(|r| r.as_array().is_some_and(Vec::is_empty)), "role removed: {a}");
    let bb = app.by_external_id("Users", &bob_id).await.unwrap();
    assert_eq!(bb["roles"][0]["value"], "developer", "{bb}");
    let (_, g) = app
        .get(&format!("/Groups/{}", app.by_external_id("Groups", &eng_id).await.unwrap()["id"].as_str().unwrap()))
        .await;
    assert_eq!(ids_of(&g), vec![bb["id"].as_str().unwrap().to_owned()]);
    if let Some(rr) = &refr {
        let ra = rr.by_external_id("Users", &alice_id).await.unwrap();
        assert_eq!(ra["title"], "Staff Engineer");
        let rb = rr.by_external_id("Users", &bob_id).await.unwrap();
        let rg = rr.by_name("Groups", "displayName", "Engineering").await.unwrap();
        assert_eq!(ids_of(&rg), vec![rb["id"].as_str().unwrap().to_owned()]);
        let app_group = rr.by_name("Groups", "displayName", "eng-app").await.unwrap();
        assert_eq!(ids_of(&app_group), vec![rb["id"].as_str().unwrap().to_owned()]);
    }

    // Leaver: alice is deactivated; bob is deleted from the directory.
    let p =
        acme.patch(&format!("/Users/{alice_id}"), json!([{"op": "replace", "path": "active", "value": false}])).await;
    assert_eq!(p.status, 200, "{}", p.body);
    let d = acme.call(M::DELETE, &format!("/Users/{bob_id}"), None).await;
    assert_eq!(d.status, 204);
    let r = s.sync_tick().await;
    assert_eq!(r["dead_letters"], 0, "{r}");
    assert_eq!(app.by_external_id("Users", &alice_id).await.unwrap()["active"], false);
    assert_eq!(
        app.by_external_id("Users", &bob_id).await.unwrap()["active"],
        false,
        "deactivate policy keeps the account"
    );
    let (_, g) = app
        .get(&format!("/Groups/{}", app.by_external_id("Groups", &eng_id).await.unwrap()["id"].as_str().unwrap()))
        .await;
    assert!(ids_of(&g).is_empty(), "bob left the group with the directory: {g}");
    if let Some(rr) = &refr {
        assert!(rr.by_external_id("Users", &alice_id).await.is_none(), "delete policy at scim2-server");
        assert!(rr.by_external_id("Users", &bob_id).await.is_none());
    }
    let st = s.sync_status("acme").await;
    let n_targets = if refr.is_some() { 2 } else { 1 };
    assert_eq!(st["deprovisioning"]["complete"], 2, "{st}");
    assert_eq!(st["deprovisioning"]["incomplete"], 0, "{st}");
    for u in st["deprovisioning"]["users"].as_array().unwrap() {
        assert_eq!(u["targets"].as_array().unwrap().len(), n_targets, "{u}");
        assert!(u["targets"].as_array().unwrap().iter().all(|t| t["state"] == "confirmed"), "{u}");
        assert!(u["seconds_to_full_deprovisioning"].as_i64().is_some(), "{u}");
    }
    assert!(st["still_active"].as_array().unwrap().is_empty(), "{st}");
    // Exactly one account per directory user at the fedkey target.
    assert_eq!(app.list("Users").await.len(), 2);
    // The CLI shows the same.
    let v = s.cli_json(&["sync", "status", "acme"]);
    assert_eq!(v["deprovisioning"]["complete"], 2);
    let out = s.cli(&["sync", "status", "acme"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("alice@acme.test") && text.contains("confirmed"), "{text}");
    // Everything audited.
    let (st, audit) = s.api(M::GET, "/api/v1/audit?action=sync.deliver&limit=500", Some(&s.token), None).await;
    assert_eq!(st, 200, "{audit}");
    assert!(audit["records"].as_array().unwrap().len() >= 6, "{audit}");
}

/// Failure injection: every change is applied once, with no duplicate accounts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provisioning_survives_failures_without_duplicates() {
    for b in backends() {
        failures(b).await;
    }
}

async fn failures(b: Backend) {
    let s = Server::start(b);
    let fake = fake_target("fake-app-key-123456").await;
    let hr = directory_with_inbound(&s, "acme", "hr").await;
    outbound_trust(&s, "acme", "fake", "fake-app-key-123456").await;
    // Bad input: clear errors, nothing stored.
    let put = |body: Value| {
        let s = &s;
        async move { s.api(M::PUT, "/api/v1/directories/acme/trusts/fake/target", Some(&s.token), Some(body)).await }
    };
    let (st, v) = put(json!({"url": fake.url, "mapping": {"scopeFilter": "nonsense ("}})).await;
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("scopeFilter"), "{v}");
    let (st, v) = put(
        json!({"url": fake.url, "mapping": {"userAttributes": [{"target": "title", "source": {"copy": "nope.nope"}}]}}),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    let (st, v) = put(json!({"url": "ftp://example.test/scim"})).await;
    assert_eq!(st, 400, "{v}");
    let (st, v) = put(json!({"url": fake.url, "leaver": "explode"})).await;
    assert_eq!(st, 400, "{v}");
    let (st, v) = put(json!({"url": fake.url, "max_attempts": 0})).await;
    assert_eq!(st, 400, "{v}");
    let (st, v) = s
        .api(M::PUT, "/api/v1/directories/acme/trusts/hr/target", Some(&s.token), Some(json!({"url": fake.url})))
        .await;
    assert_eq!(st, 400, "an inbound trust has no target: {v}");
    let shown = s.cli_json(&["sync", "target", "show", "acme/fake"]);
    assert!(shown["target"].is_null(), "{shown}");
    s.set_target("acme/fake", &fake.url, None, &["--max-attempts", "6"]);
    let shown = s.cli_json(&["sync", "target", "show", "acme/fake"]);
    assert_eq!(
        (shown["target"]["base_url"].as_str(), shown["target"]["max_attempts"].as_i64()),
        (Some(fake.url.as_str()), Some(6))
    );
    let acme = Scim { s: &s, dir: "acme".into(), key: hr };

    // 500s on create: retried with backoff, then applied once.
    fake.inject("POST", "/Users", Act::Status(500, None), 2);
    let alice = acme.post("/Users", user_body("alice@acme.test", "Engineer")).await;
    let alice_id = alice.body["id"].as_str().unwrap().to_owned();
    let r = s.sync_tick().await;
    assert_eq!((r["delivered"].as_u64(), r["retried"].as_u64()), (Some(0), Some(1)), "{r}");
    let r = s.sync_tick().await;
    assert_eq!(r["retried"], 0, "not due yet (backoff): {r}");
    s.advance("1h").await;
    s.sync_tick().await;
    s.advance("1h").await;
    let r = s.sync_tick().await;
    assert_eq!(r["delivered"], 1, "{r}");
    assert_eq!(fake.user_by_ext(&alice_id).unwrap()["title"], "Engineer");
    assert_eq!(fake.count("POST /Users"), 3);

    // A target that does not answer in time: the request times out and is retried.
    s.set_target("acme/fake", &fake.url, None, &["--max-attempts", "6", "--timeout", "1s"]);
    s.sync_tick().await;
    fake.inject("GET", "/Users", Act::Stall(3000), 1);
    acme.patch(&format!("/Users/{alice_id}"), json!([{"op": "replace", "path": "title", "value": "Senior"}])).await;
    let r = s.sync_tick().await;
    assert_eq!((r["delivered"].as_u64(), r["retried"].as_u64()), (Some(0), Some(1)), "{r}");
    let st = s.sync_status("acme").await;
    assert!(st["targets"][0]["last_error"].as_str().unwrap().contains("did not answer in time"), "{st}");
    s.advance("1h").await;
    let r = s.sync_tick().await;
    assert_eq!(r["delivered"], 1, "{r}");
    assert_eq!(fake.user_by_ext(&alice_id).unwrap()["title"], "Senior");

    // 429 with Retry-After: the item (and the target) wait that long.
    fake.inject("PATCH", "/Users", Act::Status(429, Some(120)), 1);
    acme.patch(&format!("/Users/{alice_id}"), json!([{"op": "replace", "path": "title", "value": "Lead"}])).await;
    let r = s.sync_tick().await;
    assert_eq!(r["retried"], 1, "{r}");
    s.advance("60s").await;
    let r = s.sync_tick().await;
    assert_eq!(r["delivered"], 0, "Retry-After not over: {r}");
    s.advance("61s").await;
    let r = s.sync_tick().await;
    assert_eq!(r["delivered"], 1, "{r}");
    assert_eq!(fake.user_by_ext(&alice_id).unwrap()["title"], "Lead");

    // 409 on create (a concurrent writer created it): adopted, not duplicated.
    fake.inject("POST", "/Users", Act::RaceConflict, 1);
    let bob = acme.post("/Users", user_body("bob@acme.test", "Analyst")).await;
    let bob_id = bob.body["id"].as_str().unwrap().to_owned();
    let r = s.sync_tick().await;
    assert_eq!((r["delivered"].as_u64(), r["dead_letters"].as_u64()), (Some(1), Some(0)), "{r}");
    assert!(fake.user_by_ext(&bob_id).is_some());
    assert_eq!(fake.users().len(), 2);

    // An account deleted at the application: the next update re-creates it (GET 404) …
    let remote_alice = fake.user_by_ext(&alice_id).unwrap()["id"].as_str().unwrap().to_owned();
    fake.delete_user(&remote_alice);
    acme.patch(&format!("/Users/{alice_id}"), json!([{"op": "replace", "path": "title", "value": "Principal"}])).await;
    let r = s.sync_tick().await;
    assert_eq!(r["delivered"], 1, "{r}");
    assert_eq!(fake.user_by_ext(&alice_id).unwrap()["title"], "Principal");
    // … and so does a 404 to the PATCH itself (deleted between our read and our write).
    fake.inject("PATCH", "/Users", Act::DeleteThen404, 1);
    acme.patch(&format!("/Users/{bob_id}"), json!([{"op": "replace", "path": "title", "value": "Manager"}])).await;
    let r = s.sync_tick().await;
    assert_eq!(r["delivered"], 1, "{r}");
    assert_eq!(fake.user_by_ext(&bob_id).unwrap()["title"], "Manager");
    assert_eq!(fake.users().len(), 2, "no duplicates: {:?}", fake.users());

    // A target that keeps failing: the circuit opens, the delivery becomes a dead letter;
    // an operator retries it once the application is back.
    fake.inject("POST", "/Users", Act::Status(503, None), 1000);
    let carol = acme.post("/Users", user_body("carol@acme.test", "Designer")).await;
    let carol_id = carol.body["id"].as_str().unwrap().to_owned();
    let mut opened = false;
    for _ in 0..12 {
        s.sync_tick().await;
        let st = s.sync_status("acme").await;
        opened |= st["targets"][0]["circuit"] == "open";
        s.advance("1h").await;
    }
    assert!(opened, "the circuit breaker opened");
    let dl = s.cli_json(&["sync", "dead-letters", "list", "acme"]);
    let dead = dl["dead_letters"].as_array().unwrap();
    assert_eq!(dead.len(), 1, "{dl}");
    assert_eq!((dead[0]["resource_id"].as_str(), dead[0]["attempts"].as_i64()), (Some(carol_id.as_str()), Some(6)));
    assert!(dead[0]["last_error"].as_str().unwrap().contains("503"), "{dl}");
    fake.clear();
    let v = s.cli_json(&["sync", "dead-letters", "retry", "acme", "--trust", "fake"]);
    assert_eq!(v["retried"], 1);
    s.advance("2m").await;
    let r = s.sync_tick().await;
    assert_eq!(r["delivered"], 1, "{r}");
    assert!(fake.user_by_ext(&carol_id).is_some());
    let st = s.sync_status("acme").await;
    assert_eq!(st["targets"][0]["circuit"], "closed", "{st}");
    assert_eq!(st["targets"][0]["dead_letters"], 0);
    // Discarding: a dead letter can be dropped too.
    fake.inject("PATCH", "/Users", Act::Status(400, None), 1);
    acme.patch(&format!("/Users/{carol_id}"), json!([{"op": "replace", "path": "title", "value": "x"}])).await;
    let r = s.sync_tick().await;
    assert_eq!(r["dead_letters"], 1, "a 400 cannot succeed by retrying: {r}");
    let v = s.cli_json(&["sync", "dead-letters", "discard", "acme"]);
    assert_eq!(v["discarded"], 1);
    // Exactly one account per user, each with its latest attributes.
    let users = fake.users();
    assert_eq!(users.len(), 3, "{users:?}");
    let mut names: Vec<&str> = users.iter().map(|u| u["userName"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["alice@acme.test", "bob@acme.test", "carol@acme.test"]);
    // No secret in the logs.
    assert!(!s.logs().contains("fake-app-key-123456"));
}

/// Deprovisioning report: three targets, one down for a while.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deprovisioning_status_tracks_a_failing_target_until_it_confirms() {
    for b in backends() {
        deprovisioning(b).await;
    }
}

async fn deprovisioning(b: Backend) {
    let s = Server::start(b);
    let hr = directory_with_inbound(&s, "acme", "hr").await;
    let app_key = directory_with_inbound(&s, "app", "fedkey").await;
    outbound_trust(&s, "acme", "app", &app_key).await;
    s.set_target("acme/app", &format!("{}/scim/v2/app", s.url), None, &[]);
    let ok = fake_target("ok-app-key-123456").await;
    outbound_trust(&s, "acme", "crm", "ok-app-key-123456").await;
    s.set_target("acme/crm", &ok.url, None, &["--leaver", "delete"]);
    let flaky = fake_target("flaky-app-key-123456").await;
    outbound_trust(&s, "acme", "wiki", "flaky-app-key-123456").await;
    s.set_target("acme/wiki", &flaky.url, None, &[]);
    let acme = Scim { s: &s, dir: "acme".into(), key: hr };
    let dave = acme.post("/Users", user_body("dave@acme.test", "Engineer")).await;
    let dave_id = dave.body["id"].as_str().unwrap().to_owned();
    let r = s.sync_tick().await;
    assert_eq!(r["delivered"], 3, "{r}");

    // The wiki goes down; dave leaves.
    flaky.set_down(true);
    acme.patch(&format!("/Users/{dave_id}"), json!([{"op": "replace", "path": "active", "value": false}])).await;
    s.sync_tick().await;
    let st = s.sync_status("acme").await;
    let u = &st["deprovisioning"]["users"][0];
    assert_eq!(u["user"], "dave@acme.test", "{st}");
    assert_eq!(u["complete"], false);
    let state = |u: &Value, t: &str| {
        u["targets"].as_array().unwrap().iter().find(|x| x["trust"] == t).unwrap()["state"].as_str().unwrap().to_owned()
    };
    assert_eq!(state(u, "acme/app"), "confirmed");
    assert_eq!(state(u, "acme/crm"), "confirmed");
    assert_eq!(state(u, "acme/wiki"), "failed");
    let active = st["still_active"].as_array().unwrap();
    assert_eq!(active.len(), 1, "{st}");
    assert_eq!((active[0]["user"].as_str(), active[0]["trust"].as_str()), (Some("dave@acme.test"), Some("acme/wiki")));
    assert!(ok.user_by_ext(&dave_id).is_none(), "deleted at the crm");
    let out = s.cli(&["sync", "status", "acme"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Still to deprovision") && text.contains("acme/wiki"), "{text}");

    // Ten minutes later the wiki is back and confirms.
    s.advance("10m").await;
    flaky.set_down(false);
    let r = s.sync_tick().await;
    assert_eq!(r["delivered"], 1, "{r}");
    assert_eq!(flaky.user_by_ext(&dave_id).unwrap()["active"], false);
    let st = s.sync_status("acme").await;
    let u = &st["deprovisioning"]["users"][0];
    assert_eq!(u["complete"], true, "{st}");
    assert_eq!(state(u, "acme/wiki"), "confirmed");
    let took = u["seconds_to_full_deprovisioning"].as_i64().unwrap();
    assert!((600..700).contains(&took), "{took}");
    assert!(st["still_active"].as_array().unwrap().is_empty());
}

/// A server whose directory `acme` (inbound trust `hr`) provisions to a fake target
/// (`acme/crm`, default mapping); returns the server, the fake and `hr`'s SCIM key.
async fn acme_to_a_fake(b: Backend) -> (Server, Fake, String) {
    let s = Server::start(b);
    let hr = directory_with_inbound(&s, "acme", "hr").await;
    let app = fake_target("ok-app-key-123456").await;
    outbound_trust(&s, "acme", "crm", "ok-app-key-123456").await;
    s.set_target("acme/crm", &app.url, None, &[]);
    (s, app, hr)
}

/// A change written while a pass is delivering (here: a user leaves while another user's
/// create is held at the application) is delivered in the same pass, not the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_written_during_a_pass_are_delivered_in_it() {
    for b in backends() {
        let (s, app, hr) = acme_to_a_fake(b).await;
        let acme = Scim { s: &s, dir: "acme".into(), key: hr };
        let dave = acme.post("/Users", user_body("dave@acme.test", "Engineer")).await;
        let dave_id = dave.body["id"].as_str().unwrap().to_owned();
        assert_eq!(s.sync_tick().await["delivered"], 1);
        acme.post("/Users", user_body("erin@acme.test", "Engineer")).await;
        let (arrived, release) = app.hold("POST", "/Users");
        let (report, ()) = tokio::join!(s.sync_tick(), async {
            tokio::time::timeout(std::time::Duration::from_secs(60), arrived.notified())
                .await
                .expect("erin's create reaches the application");
            acme.patch(&format!("/Users/{dave_id}"), json!([{"op": "replace", "path": "active", "value": false}]))
                .await;
            release.notify_one();
        });
        assert_eq!(report["delivered"], 2, "erin and dave's leaving in one pass: {report}");
        assert_eq!(app.user_by_ext(&dave_id).unwrap()["active"], false);
        assert_eq!(app.users().len(), 2);
    }
}

/// Makes recording a delivery (a work row turning `done`) fail, or stop failing, from
/// outside fedkey: a store error after the application has the change.
fn fail_finishing(b: Backend, s: &Server, on: bool) {
    FailingTrigger {
        name: "fail_finishing",
        event: "UPDATE",
        table: "sync_work",
        when: "NEW.status = 'done'",
        message: "disk trouble",
    }
    .set(b, s, on);
}

/// A store error while a pass records its outcomes gives the unrecorded rows' leases back:
/// the next pass delivers them at once (found at the application, not created twice)
/// instead of after the lease expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_error_while_recording_leaves_nothing_leased() {
    for b in backends() {
        let (s, app, hr) = acme_to_a_fake(b).await;
        let acme = Scim { s: &s, dir: "acme".into(), key: hr };
        let mut ids = Vec::new();
        for name in ["alice@acme.test", "bob@acme.test"] {
            ids.push(acme.post("/Users", user_body(name, "Engineer")).await.body["id"].as_str().unwrap().to_owned());
        }
        fail_finishing(b, &s, true);
        let (st, v) = s.api(M::POST, "/api/v1/test/sync/tick", Some(&s.token), None).await;
        assert_eq!(st, 500, "{v}");
        assert_eq!(app.users().len(), 2, "delivered, then the store failed");
        fail_finishing(b, &s, false);
        // The same instant: no lease has expired.
        let r = s.sync_tick().await;
        assert_eq!(r["delivered"], 2, "{r}");
        assert_eq!(app.users().len(), 2, "found again, not created twice");
        for id in &ids {
            assert!(app.user_by_ext(id).is_some(), "{id}");
        }
    }
}

/// An account deleted at the application and everything queued again (`sync target set`):
/// the user and a group holding them are delivered in the same tick, the group first with
/// the member's stale remote id. The target refuses it; the group must be retried after
/// the member is re-created, not become a dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_waits_for_a_member_being_recreated() {
    for b in backends() {
        let s = Server::start(b);
        let hr = directory_with_inbound(&s, "acme", "hr").await;
        let app_key = directory_with_inbound(&s, "app", "fedkey").await;
        outbound_trust(&s, "acme", "app", &app_key).await;
        let url = format!("{}/scim/v2/app", s.url);
        s.set_target("acme/app", &url, None, &[]);
        let acme = Scim { s: &s, dir: "acme".into(), key: hr };
        let alice = acme.post("/Users", user_body("alice@acme.test", "Engineer")).await.body["id"].clone();
        let bob = acme.post("/Users", user_body("bob@acme.test", "Analyst")).await.body["id"].clone();
        let eng = acme
            .post(
                "/Groups",
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Engineering",
                       "members": [{"value": alice}, {"value": bob}]}),
            )
            .await;
        assert_eq!(eng.status, 201, "{}", eng.body);
        let eng_id = eng.body["id"].as_str().unwrap().to_owned();
        assert_eq!(s.sync_tick().await["dead_letters"], 0);

        // Alice's account disappears at the application, then everything is queued again.
        let app = Reader { base: url.clone(), token: app_key.clone() };
        let old = app.by_external_id("Users", alice.as_str().unwrap()).await.unwrap();
        let old_id = old["id"].as_str().unwrap().to_owned();
        let resp =
            reqwest::Client::new().delete(format!("{url}/Users/{old_id}")).bearer_auth(&app_key).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 204);
        s.set_target("acme/app", &url, None, &[]);

        let mut last = Value::Null;
        for _ in 0..6 {
            last = s.sync_tick().await;
            assert_eq!(last["dead_letters"], 0, "{last} {}", s.cli_json(&["sync", "dead-letters", "list", "acme"]));
            s.advance("5m").await;
        }
        let now = app.by_external_id("Users", alice.as_str().unwrap()).await.expect("alice re-created");
        assert_ne!(now["id"], old_id.as_str());
        let g = app.by_external_id("Groups", &eng_id).await.unwrap();
        let (_, g) = app.get(&format!("/Groups/{}", g["id"].as_str().unwrap())).await;
        let b = app.by_external_id("Users", bob.as_str().unwrap()).await.unwrap();
        let mut want = vec![now["id"].as_str().unwrap().to_owned(), b["id"].as_str().unwrap().to_owned()];
        want.sort();
        assert_eq!(ids_of(&g), want, "{last}");
    }
}

/// A target that supports ETags: updates carry the `If-Match` of the version they were
/// computed from, and a 412 (the account changed meanwhile) is retried from a fresh read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn updates_use_etags_where_the_target_supports_them() {
    let s = Server::start(Backend::Sqlite);
    let fake = fake_target("fake-app-key-123456").await;
    fake.st.lock().unwrap().etag = true;
    let hr = directory_with_inbound(&s, "acme", "hr").await;
    outbound_trust(&s, "acme", "fake", "fake-app-key-123456").await;
    s.set_target("acme/fake", &fake.url, None, &[]);
    let acme = Scim { s: &s, dir: "acme".into(), key: hr };
    let alice = acme.post("/Users", user_body("alice@acme.test", "Engineer")).await;
    let alice_id = alice.body["id"].as_str().unwrap().to_owned();
    assert_eq!(s.sync_tick().await["delivered"], 1);

    acme.patch(&format!("/Users/{alice_id}"), json!([{"op": "replace", "path": "title", "value": "Senior"}])).await;
    fake.inject("PATCH", "/Users", Act::Status(412, None), 1);
    let r = s.sync_tick().await;
    assert_eq!(
        (r["delivered"].as_u64(), r["retried"].as_u64(), r["dead_letters"].as_u64()),
        (Some(0), Some(1), Some(0))
    );
    s.advance("1h").await;
    assert_eq!(s.sync_tick().await["delivered"], 1);
    let user = fake.user_by_ext(&alice_id).unwrap();
    assert_eq!(user["title"], "Senior");
    // The PATCH that went through named the version it was computed from.
    let sent = fake.st.lock().unwrap().if_match.clone();
    assert!(!sent.is_empty() && sent.iter().all(|m| m.as_deref().is_some_and(|e| e.starts_with("W/\""))), "{sent:?}");
}

/// Issue 16, row 1: a role rule that names the privileged group by id is not met by a group
/// someone without `groups:privileged` named after that id. Before the fix the impostor's
/// member got the role at the application.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_rule_by_id_is_not_met_by_a_group_named_after_the_id() {
    for b in backends() {
        let (s, app, hr) = acme_to_a_fake(b).await;
        let (st, v) = s
            .api(
                M::PUT,
                "/api/v1/directories/acme/trusts/hr/policy",
                Some(&s.token),
                Some(json!({"privileged_groups": ["admin*"]})),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        let scopes = ["users:read", "users:write", "groups:read", "groups:write", "groups:privileged"];
        let (st, v) = s
            .api(
                M::POST,
                "/api/v1/directories/acme/trusts",
                Some(&s.token),
                Some(json!({"name": "root", "direction": "inbound", "scopes": scopes})),
            )
            .await;
        assert_eq!(st, 201, "{v}");
        let root = Scim { s: &s, dir: "acme".into(), key: v["key"].as_str().unwrap().to_owned() };
        let acme = Scim { s: &s, dir: "acme".into(), key: hr };
        let id = |r: ScimResp| r.body["id"].as_str().unwrap().to_owned();
        let alice = id(acme.post("/Users", user_body("alice@acme.test", "Admin")).await);
        let mallory = id(acme.post("/Users", user_body("mallory@acme.test", "Intern")).await);
        let admins = root.post("/Groups", json!({"displayName": "Admins", "members": [{"value": alice}]})).await;
        assert_eq!(admins.status, 201, "{}", admins.body);
        let admins = id(admins);
        // Without the privileged scope: read the id, name a group after it, join it.
        let r = acme.post("/Groups", json!({"displayName": admins, "members": [{"value": mallory}]})).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let mapping = json!({"roles": [
            {"group": admins, "assign": {"appRole": "admin"}},
            {"group": {"name": "Admins"}, "assign": {"appRole": "auditor"}}
        ]});
        let shown = s.set_target("acme/crm", &app.url, Some(mapping), &[]);
        assert_eq!(shown["target"]["mapping"]["roles"][0]["group"], json!({"id": admins}), "{shown}");
        for _ in 0..3 {
            s.sync_tick().await;
        }
        let roles = |u: &Value| -> Vec<String> {
            u["roles"]
                .as_array()
                .map(|a| a.iter().map(|r| r["value"].as_str().unwrap().to_owned()).collect())
                .unwrap_or_default()
        };
        let a = app.user_by_ext(&alice).expect("alice at the application");
        assert_eq!(roles(&a), ["admin", "auditor"], "{a}");
        let m = app.user_by_ext(&mallory).expect("mallory at the application");
        assert!(roles(&m).is_empty(), "{m}");
    }
}
