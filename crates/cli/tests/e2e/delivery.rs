//! Delivery guarantees of outbound provisioning under failure, on the real binary:
//!
//! - slow and stalled answers (a body trickled slower than the target timeout, a body that
//!   stops half way, a create applied by the application but never answered, a request
//!   never answered at all): retried, and applied exactly once;
//! - a source process killed with SIGKILL again and again while it delivers a large batch
//!   to a second fedkey process: after restarts (and lease expiry) every change arrives,
//!   no account is duplicated;
//! - two nodes on one PostgreSQL database delivering one outbox together: each user is
//!   created once, each change sent once, none is lost, both nodes work;
//! - concurrent deliveries earning one application group (role rule): created once.
//!
//! A misbehaving HTTP/1.1 proxy written on raw TCP sits in front of each target: it
//! forwards requests, records what the target answered, and mistreats chosen requests.

use super::*;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use reqwest::Method as M;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::provisioning::{Reader, directory_with_inbound, outbound_trust, user_body};

const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// How long a stalled answer stays silent (well beyond the 1 s target timeout).
const STALL: Duration = Duration::from_secs(8);

#[path = "delivery_bulk.rs"]
mod delivery_bulk;

// ---------------------------------------------------------------- misbehaving proxy

/// How the proxy mistreats one request.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Misbehave {
    /// Forwards it; sends the status line and headers at once, then the body one byte
    /// every 200 ms, and gives up after 40 bytes.
    Trickle,
    /// Forwards it; sends the headers and half the body, then nothing.
    StallMidBody,
    /// Forwards it (the change happens at the target), then answers nothing.
    StallAfterForward,
    /// Neither forwards nor answers it.
    StallBeforeForward,
    /// Answers it with this status and a SCIM Error, without forwarding it.
    Refuse(u16),
    /// A `/Bulk` request: forwards it without its last operation, and answers that one
    /// with this status (as if the application had refused just that operation).
    FailLastBulkOp(u16),
}

/// One request the proxy received.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    /// Without the query.
    path: String,
    /// What the target answered; `None` when the request was not forwarded.
    status: Option<u16>,
    /// `userName` / `displayName` of a POST body.
    name: Option<String>,
    misbehaved: Option<Misbehave>,
    /// An operation of a `/Bulk` request (which is recorded too), not a request itself.
    bulk_op: bool,
}

#[derive(Default)]
struct ProxyState {
    /// (method, path prefix, what to do, remaining times)
    rules: Vec<(String, String, Misbehave, usize)>,
    seen: Vec<Seen>,
    open: usize,
    max_open: usize,
}

struct Proxy {
    url: String,
    st: Arc<Mutex<ProxyState>>,
    _task: tokio::task::JoinHandle<()>,
}

/// Counts a request as open until the target has answered it.
struct Open(Arc<Mutex<ProxyState>>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.lock().unwrap().open -= 1;
    }
}

/// An HTTP/1.1 request as read from the socket.
struct RawRequest {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Proxy {
    /// A proxy to `upstream` (a SCIM base URL), one request per connection.
    async fn start(upstream: String) -> Proxy {
        let st: Arc<Mutex<ProxyState>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let st2 = st.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(proxy_conn(sock, upstream.clone(), http.clone(), st2.clone()));
            }
        });
        Proxy { url, st, _task: task }
    }

    fn misbehave(&self, method: &str, prefix: &str, m: Misbehave, times: usize) {
        self.st.lock().unwrap().rules.push((method.into(), prefix.into(), m, times));
    }

    fn seen(&self) -> Vec<Seen> {
        self.st.lock().unwrap().seen.clone()
    }

    /// HTTP requests that reached the proxy (not counting the operations inside a `/Bulk`).
    fn requests(&self) -> usize {
        self.seen().iter().filter(|s| !s.bulk_op).count()
    }

    /// Requests the target has answered so far.
    fn forwarded(&self) -> usize {
        self.st.lock().unwrap().seen.iter().filter(|s| s.status.is_some()).count()
    }

    fn open(&self) -> usize {
        self.st.lock().unwrap().open
    }

    fn max_open(&self) -> usize {
        self.st.lock().unwrap().max_open
    }

    /// Requests `METHOD path` the target answered with `status`, by lower-cased name.
    fn by_name(&self, method: &str, path: &str, status: u16) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for s in self.seen() {
            if s.method == method && s.path == path && s.status == Some(status) {
                *out.entry(s.name.unwrap_or_default().to_lowercase()).or_insert(0) += 1;
            }
        }
        out
    }

    /// How many `METHOD path` requests reached the target (any answer).
    fn count(&self, method: &str, path_prefix: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == method && s.path.starts_with(path_prefix) && s.status.is_some())
            .count()
    }
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<RawRequest> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).ok()?.to_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Some(RawRequest { method, target, headers, body })
}

async fn proxy_conn(
    mut sock: tokio::net::TcpStream,
    upstream: String,
    http: reqwest::Client,
    st: Arc<Mutex<ProxyState>>,
) {
    let Some(req) = read_request(&mut sock).await else { return };
    let path = req.target.split('?').next().unwrap_or("").to_owned();
    let misbehaved = {
        let mut g = st.lock().unwrap();
        g.open += 1;
        g.max_open = g.max_open.max(g.open);
        g.rules.iter_mut().find(|r| r.0 == req.method && path.starts_with(&r.1) && r.3 > 0).map(|r| {
            r.3 -= 1;
            r.2
        })
    };
    // Open while the target handles it: at most one request per delivery in flight.
    let open = Open(st.clone());
    let name = (req.method == "POST")
        .then(|| serde_json::from_slice::<Value>(&req.body).ok())
        .flatten()
        .and_then(|v| v.get("userName").or_else(|| v.get("displayName")).and_then(Value::as_str).map(str::to_owned));
    let mut seen = Seen { method: req.method.clone(), path, status: None, name, misbehaved, bulk_op: false };
    if misbehaved == Some(Misbehave::StallBeforeForward) {
        drop(open);
        st.lock().unwrap().seen.push(seen);
        tokio::time::sleep(STALL).await;
        return;
    }
    if let Some(Misbehave::Refuse(code)) = misbehaved {
        drop(open);
        seen.status = Some(code);
        st.lock().unwrap().seen.push(seen);
        let body = json!({"schemas": [ERROR_URN], "status": code.to_string(), "detail": "refused by the test proxy"});
        let body = serde_json::to_vec(&body).unwrap();
        let head = format!(
            "HTTP/1.1 {code} Refused\r\nconnection: close\r\ncontent-type: application/scim+json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let _ = sock.write_all(head.as_bytes()).await;
        let _ = sock.write_all(&body).await;
        let _ = sock.shutdown().await;
        return;
    }
    let mut forward = req.body.clone();
    let mut withheld: Option<Value> = None;
    if let Some(Misbehave::FailLastBulkOp(_)) = misbehaved {
        let mut v: Value = serde_json::from_slice(&req.body).unwrap();
        withheld = v["Operations"].as_array_mut().unwrap().pop();
        forward = serde_json::to_vec(&v).unwrap();
    }
    let mut rb = http.request(M::from_bytes(req.method.as_bytes()).unwrap(), format!("{upstream}{}", req.target));
    for (k, v) in &req.headers {
        if matches!(k.as_str(), "authorization" | "content-type" | "accept" | "if-match") {
            rb = rb.header(k.as_str(), v.as_str());
        }
    }
    let (status, ctype, mut body) = match rb.body(forward.clone()).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let ctype = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            (status, ctype, r.bytes().await.map(|b| b.to_vec()).unwrap_or_default())
        }
        Err(e) => (502, "text/plain".to_owned(), e.to_string().into_bytes()),
    };
    drop(open);
    seen.status = Some(status);
    let ops = if seen.method == "POST" && seen.path.ends_with("/Bulk") {
        bulk_operations(&forward, &body)
    } else {
        Vec::new()
    };
    if let (Some(Misbehave::FailLastBulkOp(code)), Some(op)) = (misbehaved, withheld) {
        let mut v: Value = serde_json::from_slice(&body).unwrap();
        let mut answer = json!({"method": op["method"], "status": code.to_string(),
            "response": {"schemas": [ERROR_URN], "status": code.to_string(), "detail": "refused by the test proxy"}});
        if let Some(b) = op.get("bulkId") {
            answer["bulkId"] = b.clone();
        }
        v["Operations"].as_array_mut().unwrap().push(answer);
        body = serde_json::to_vec(&v).unwrap();
    }
    {
        let mut g = st.lock().unwrap();
        g.seen.push(seen);
        g.seen.extend(ops);
    }
    let mut head = format!("HTTP/1.1 {status} Proxied\r\nconnection: close\r\n");
    if !ctype.is_empty() {
        head.push_str(&format!("content-type: {ctype}\r\n"));
    }
    if status != 204 {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    match misbehaved {
        None | Some(Misbehave::FailLastBulkOp(_)) | Some(Misbehave::Refuse(_)) => {
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(&body).await;
            let _ = sock.shutdown().await;
        }
        Some(Misbehave::Trickle) => {
            if sock.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            for b in body.iter().take(40) {
                if sock.write_all(&[*b]).await.is_err() || sock.flush().await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Some(Misbehave::StallMidBody) => {
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(&body[..body.len() / 2]).await;
            tokio::time::sleep(STALL).await;
        }
        Some(Misbehave::StallAfterForward) | Some(Misbehave::StallBeforeForward) => {
            tokio::time::sleep(STALL).await;
        }
    }
}

/// The operations of a `/Bulk` request as if each had been its own request, with the
/// status the application gave it: the assertions about creates and PATCHes count them
/// whichever way fedkey sent them.
fn bulk_operations(request: &[u8], answer: &[u8]) -> Vec<Seen> {
    let (Ok(req), Ok(ans)) = (serde_json::from_slice::<Value>(request), serde_json::from_slice::<Value>(answer)) else {
        return Vec::new();
    };
    let empty = Vec::new();
    let sent = req["Operations"].as_array().unwrap_or(&empty);
    let mut out = Vec::new();
    for (i, a) in ans["Operations"].as_array().unwrap_or(&empty).iter().enumerate() {
        let op = match a["bulkId"].as_str() {
            Some(b) => sent.iter().find(|o| o["bulkId"] == b),
            None => sent.get(i),
        };
        let Some(op) = op else { continue };
        let status =
            a["status"].as_str().and_then(|s| s.parse().ok()).or_else(|| a["status"].as_u64().map(|n| n as u16));
        let name = op["data"]["userName"].as_str().or_else(|| op["data"]["displayName"].as_str());
        out.push(Seen {
            method: op["method"].as_str().unwrap_or("").to_uppercase(),
            path: op["path"].as_str().unwrap_or("").to_owned(),
            status,
            name: (op["method"] == "POST").then(|| name.map(str::to_owned)).flatten(),
            misbehaved: None,
            bulk_op: true,
        });
    }
    out
}

// ---------------------------------------------------------------- helpers

/// `POST /Bulk` in chunks of 250 operations; every operation must succeed. Returns the
/// id created by each operation that has a `bulkId`, by bulkId.
async fn bulk(c: &Scim<'_>, ops: Vec<Value>) -> HashMap<String, String> {
    let mut ids = HashMap::new();
    for chunk in ops.chunks(250) {
        let r = c.post("/Bulk", json!({"schemas": [BULK_REQUEST], "Operations": chunk})).await;
        assert_eq!(r.status, 200, "{}", r.body);
        for op in r.body["Operations"].as_array().unwrap() {
            let st: u16 = op["status"].as_str().unwrap().parse().unwrap();
            assert!((200..300).contains(&st), "{op}");
            if let (Some(b), Some(loc)) = (op["bulkId"].as_str(), op["location"].as_str()) {
                ids.insert(b.to_owned(), loc.rsplit('/').next().unwrap().to_owned());
            }
        }
    }
    ids
}

fn crash_user_name(i: usize) -> String {
    format!("user{i:04}@acme.test")
}

/// Creates `n` users; their ids in creation order.
async fn create_users(c: &Scim<'_>, n: usize) -> Vec<String> {
    let ops: Vec<Value> = (0..n)
        .map(|i| json!({"method": "POST", "path": "/Users", "bulkId": format!("u{i}"), "data": user_body(&crash_user_name(i), "Engineer")}))
        .collect();
    let ids = bulk(c, ops).await;
    (0..n).map(|i| ids[&format!("u{i}")].clone()).collect()
}

/// Creates `n` groups; group `g` holds the users whose index is `g` modulo `n`.
async fn create_groups(c: &Scim<'_>, users: &[String], n: usize) -> Vec<String> {
    let ops: Vec<Value> = (0..n)
        .map(|g| {
            let members: Vec<Value> =
                users.iter().enumerate().filter(|(i, _)| i % n == g).map(|(_, id)| json!({"value": id})).collect();
            json!({"method": "POST", "path": "/Groups", "bulkId": format!("g{g}"),
                   "data": {"schemas": [GROUP_URN], "displayName": format!("Team {g:02}"), "members": members}})
        })
        .collect();
    let ids = bulk(c, ops).await;
    (0..n).map(|g| ids[&format!("g{g}")].clone()).collect()
}

fn patch_op(path: &str, ops: Value) -> Value {
    json!({"method": "PATCH", "path": path, "data": {"schemas": [PATCH_URN], "Operations": ops}})
}

/// Every resource of a SCIM endpoint, page by page.
pub(super) async fn read_all(base: &str, token: &str, endpoint: &str) -> Vec<Value> {
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    let mut start = 1;
    for _ in 0..1000 {
        let v: Value = http
            .get(format!("{base}/{endpoint}?startIndex={start}&count=200"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let page = v["Resources"].as_array().cloned().unwrap_or_default();
        let n = page.len();
        out.extend(page);
        start += n;
        if n == 0 || start as u64 > v["totalResults"].as_u64().unwrap() {
            break;
        }
    }
    out
}

/// Every audit record with `action`, page by page.
pub(super) async fn audit_all(s: &Server, action: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0i64;
    for _ in 0..1000 {
        let (st, v) = s
            .api(M::GET, &format!("/api/v1/audit?action={action}&limit=1000&after={after}"), Some(&s.token), None)
            .await;
        assert_eq!(st, 200, "{v}");
        let recs = v["records"].as_array().cloned().unwrap_or_default();
        if recs.is_empty() {
            break;
        }
        after = recs.iter().filter_map(|r| r["seq"].as_i64()).max().unwrap();
        out.extend(recs);
    }
    out
}

/// The one target status row of a directory.
async fn target_status(s: &Server, dir: &str) -> Value {
    s.sync_status(dir).await["targets"][0].clone()
}

/// Checks the application against the directory: one account per active user (by
/// `externalId` and by `userName`) with the directory's latest attributes; deleted and
/// deactivated users inactive, or without an account when they left before their first
/// delivery; group memberships exact (active members); one successful `POST /Users` per
/// account at the proxy, none answered 409.
async fn assert_target_matches(
    src: &Server,
    src_key: &str,
    app: &Reader,
    proxy: &Proxy,
    created: &[String],
    groups: &[String],
) {
    let src_base = format!("{}/scim/v2/acme", src.url);
    let dir_users = read_all(&src_base, src_key, "Users").await;
    let remote_users = read_all(&app.base, &app.token, "Users").await;
    let mut by_ext: HashMap<String, Vec<&Value>> = HashMap::new();
    let mut names = BTreeSet::new();
    for r in &remote_users {
        by_ext.entry(r["externalId"].as_str().unwrap().to_owned()).or_default().push(r);
        assert!(names.insert(r["userName"].as_str().unwrap().to_lowercase()), "duplicate userName {r}");
    }
    let dir_by_id: HashMap<&str, &Value> = dir_users.iter().map(|u| (u["id"].as_str().unwrap(), u)).collect();
    let mut active_remote: HashMap<String, String> = HashMap::new();
    let (mut left, mut absent) = (0, 0);
    for id in created {
        let found = by_ext.get(id.as_str()).map(Vec::as_slice).unwrap_or_default();
        assert!(found.len() <= 1, "user {id}: {found:?}");
        let active = dir_by_id.get(id.as_str()).is_some_and(|u| u["active"] == true);
        let Some(r) = found.first() else {
            assert!(!active, "active user {id} has no account");
            absent += 1;
            continue;
        };
        match dir_by_id.get(id.as_str()) {
            // A leaver's account is only deactivated; its other attributes stay as they were.
            Some(u) => {
                let attrs: &[&str] = if active { &["userName", "title", "active"] } else { &["userName", "active"] };
                for attr in attrs {
                    assert_eq!(r[attr], u[attr], "{attr} of {id}: directory {u}, application {r}");
                }
                if active {
                    active_remote.insert(id.clone(), r["id"].as_str().unwrap().to_owned());
                } else {
                    left += 1;
                }
            }
            None => {
                assert_eq!(r["active"], false, "a deleted user is deactivated: {r}");
                left += 1;
            }
        }
    }
    assert_eq!(remote_users.len(), active_remote.len() + left, "no account the directory does not explain");
    eprintln!(
        "{} accounts active, {left} deprovisioned, {absent} users left before their first delivery",
        active_remote.len()
    );
    // One successful create per account; no create answered 409 (two writers racing).
    let creates = proxy.by_name("POST", "/Users", 201);
    assert_eq!(creates.len(), remote_users.len(), "every account created once");
    let twice: Vec<_> = creates.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "created more than once: {twice:?}");
    assert!(proxy.by_name("POST", "/Users", 409).is_empty(), "a create raced another: {:?}", proxy.seen().len());
    // Groups: one per directory group (application groups of role rules aside), with
    // exactly its active members.
    let remote_groups: Vec<Value> = read_all(&app.base, &app.token, "Groups")
        .await
        .into_iter()
        .filter(|g| g.get("externalId").is_some_and(Value::is_string))
        .collect();
    assert_eq!(remote_groups.len(), groups.len(), "{remote_groups:?}");
    let src_scim = Scim { s: src, dir: "acme".into(), key: src_key.to_owned() };
    for gid in groups {
        let g = src_scim.get(&format!("/Groups/{gid}")).await;
        assert_eq!(g.status, 200, "{}", g.body);
        let mut want: Vec<String> = g.body["members"]
            .as_array()
            .map(|m| m.iter().filter_map(|m| active_remote.get(m["value"].as_str().unwrap()).cloned()).collect())
            .unwrap_or_default();
        want.sort();
        let r = app.by_external_id("Groups", gid).await.unwrap_or_else(|| panic!("group {gid} at the application"));
        let (_, r) = app.get(&format!("/Groups/{}", r["id"].as_str().unwrap())).await;
        assert_eq!(r["displayName"], g.body["displayName"]);
        assert_eq!(super::provisioning::ids_of(&r), want, "members of {}", g.body["displayName"]);
    }
}

// ---------------------------------------------------------------- slow bodies

/// Answers that come too slowly (a trickled body, a body that stops half way) or never
/// (a create applied but not answered, a request dropped): each is retried after the
/// target timeout, and the change is applied exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provisioning_survives_slow_and_stalled_answers_exactly_once() {
    for b in backends() {
        slow_answers(b).await;
    }
}

async fn slow_answers(b: Backend) {
    let s = Server::start(b);
    let hr = directory_with_inbound(&s, "acme", "hr").await;
    let app_key = directory_with_inbound(&s, "app", "fedkey").await;
    outbound_trust(&s, "acme", "app", &app_key).await;
    let proxy = Proxy::start(format!("{}/scim/v2/app", s.url)).await;
    s.set_target("acme/app", &proxy.url, None, &["--timeout", "1s"]);
    let app = Reader { base: format!("{}/scim/v2/app", s.url), token: app_key.clone() };
    let acme = Scim { s: &s, dir: "acme".into(), key: hr.clone() };

    // One change, one misbehaving answer: the first pass times out (after about the 1 s
    // timeout, not the 8 s stall), the next one (after the backoff) delivers.
    let fails_then_delivers = |what: &'static str| {
        let s = &s;
        async move {
            let t0 = Instant::now();
            let r = s.sync_tick().await;
            assert_eq!((r["delivered"].as_u64(), r["retried"].as_u64()), (Some(0), Some(1)), "{what}: {r}");
            assert!(t0.elapsed() < Duration::from_secs(6), "{what}: the timeout covers the whole answer");
            let st = target_status(s, "acme").await;
            assert!(st["last_error"].as_str().unwrap().contains("did not answer in time"), "{what}: {st}");
            s.advance("1h").await;
            let r = s.sync_tick().await;
            assert_eq!((r["delivered"].as_u64(), r["dead_letters"].as_u64()), (Some(1), Some(0)), "{what}: {r}");
        }
    };
    let posts = |name: &str| proxy.by_name("POST", "/Users", 201).get(name).copied().unwrap_or(0);

    // The create is applied, its answer's body trickles in: the retry matches the account.
    proxy.misbehave("POST", "/Users", Misbehave::Trickle, 1);
    let alice =
        acme.post("/Users", user_body("alice@acme.test", "Engineer")).await.body["id"].as_str().unwrap().to_owned();
    fails_then_delivers("trickled create").await;
    assert_eq!(posts("alice@acme.test"), 1, "one create, matched on retry");
    let a = app.by_external_id("Users", &alice).await.unwrap();
    assert_eq!(a["title"], "Engineer");

    // The lookup before the create stops half way through its body.
    proxy.misbehave("GET", "/Users", Misbehave::StallMidBody, 1);
    let bob = acme.post("/Users", user_body("bob@acme.test", "Analyst")).await.body["id"].as_str().unwrap().to_owned();
    fails_then_delivers("lookup stalled mid-body").await;
    assert_eq!(posts("bob@acme.test"), 1);

    // The application creates the account but never answers.
    proxy.misbehave("POST", "/Users", Misbehave::StallAfterForward, 1);
    let carol =
        acme.post("/Users", user_body("carol@acme.test", "Designer")).await.body["id"].as_str().unwrap().to_owned();
    fails_then_delivers("create applied, never answered").await;
    assert_eq!(posts("carol@acme.test"), 1, "the retry found carol by externalId");

    // The application takes the request and does nothing with it.
    proxy.misbehave("POST", "/Users", Misbehave::StallBeforeForward, 1);
    let dave =
        acme.post("/Users", user_body("dave@acme.test", "Support")).await.body["id"].as_str().unwrap().to_owned();
    let dropped = |p: &Proxy| p.seen().iter().filter(|x| x.misbehaved == Some(Misbehave::StallBeforeForward)).count();
    fails_then_delivers("create dropped").await;
    assert_eq!(dropped(&proxy), 1);
    assert_eq!(posts("dave@acme.test"), 1, "created by the retry");

    // An update applied, its answer trickled: the retry finds nothing left to change.
    proxy.misbehave("PATCH", "/Users", Misbehave::Trickle, 1);
    acme.patch(&format!("/Users/{alice}"), json!([{"op": "replace", "path": "title", "value": "Senior"}])).await;
    let patches = proxy.count("PATCH", "/Users");
    fails_then_delivers("trickled update").await;
    assert_eq!(proxy.count("PATCH", "/Users"), patches + 1, "the change was sent once");
    assert_eq!(app.by_external_id("Users", &alice).await.unwrap()["title"], "Senior");

    // A group created but not answered; its members arrive with it, once.
    proxy.misbehave("POST", "/Groups", Misbehave::StallAfterForward, 1);
    let eng = acme
        .post("/Groups", json!({"schemas": [GROUP_URN], "displayName": "Engineering", "members": [{"value": alice}, {"value": bob}]}))
        .await;
    assert_eq!(eng.status, 201, "{}", eng.body);
    let eng = eng.body["id"].as_str().unwrap().to_owned();
    // The members are not sent again (the default mapping does not read memberships; the
    // group carries them): only the group, which times out.
    let user_requests = proxy.count("GET", "/Users") + proxy.count("PATCH", "/Users");
    let r = s.sync_tick().await;
    assert_eq!((r["delivered"].as_u64(), r["retried"].as_u64()), (Some(0), Some(1)), "{r}");
    assert_eq!(proxy.count("GET", "/Users") + proxy.count("PATCH", "/Users"), user_requests, "no user lookups");
    s.advance("1h").await;
    let r = s.sync_tick().await;
    assert_eq!(r["delivered"], 1, "{r}");
    assert_eq!(proxy.count("POST", "/Groups"), 1);

    // A leaver whose deactivation answer stalls mid-body.
    proxy.misbehave("PATCH", "/Users", Misbehave::StallMidBody, 1);
    acme.patch(&format!("/Users/{dave}"), json!([{"op": "replace", "path": "active", "value": false}])).await;
    fails_then_delivers("deactivation stalled mid-body").await;
    let st = s.sync_status("acme").await;
    assert_eq!(
        (st["deprovisioning"]["complete"].as_u64(), st["deprovisioning"]["incomplete"].as_u64()),
        (Some(1), Some(0)),
        "{st}"
    );

    // Exactly one account per user with the latest state; the group has both members.
    assert_target_matches(&s, &hr, &app, &proxy, &[alice, bob, carol, dave], &[eng]).await;
    let st = target_status(&s, "acme").await;
    assert_eq!(
        (st["pending"].as_u64(), st["dead_letters"].as_u64(), st["circuit"].as_str()),
        (Some(0), Some(0), Some("closed")),
        "{st}"
    );
    assert!(!s.logs().contains(&app_key), "no key in the logs");
}

// ---------------------------------------------------------------- crash test

/// Users of the crash test (created through /Bulk) and groups they are spread over.
const CRASH_USERS: usize = 1000;
const CRASH_GROUPS: usize = 10;
/// Deliveries in flight at once (the target's `concurrency`).
const CRASH_CONCURRENCY: usize = 8;
/// Operations per `/Bulk` request (the application, a fedkey directory, supports it).
const CRASH_BULK: usize = 10;
/// Answers of the target between two kills (varied: early, late, mid-batch), each
/// operation of a `/Bulk` counting as one. The whole run takes about 1,800: the kills are
/// spread over its first 1,000.
const KILL_AFTER: [usize; 6] = [40, 250, 250, 200, 150, 100];

/// What a [`ticker`] did: deliveries, and ticks answered with an error.
#[derive(Debug, Default, Clone, Copy)]
struct Ticked {
    delivered: u64,
    errors: u64,
}

/// Ticks a server, without the harness, until `stop` is set or the process goes away (the
/// crash test kills it while a tick is in flight), at most 10,000 times.
fn ticker(url: String, token: String, stop: Arc<std::sync::atomic::AtomicBool>) -> tokio::task::JoinHandle<Ticked> {
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut done = Ticked::default();
        for _ in 0..10_000 {
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            let Ok(resp) = http.post(format!("{url}/api/v1/test/sync/tick")).bearer_auth(&token).send().await else {
                break;
            };
            let Ok(v) = resp.json::<Value>().await else { break };
            let n = v["report"]["delivered"].as_u64().unwrap_or(0);
            done.delivered += n;
            if v["report"].is_null() || v["report"]["dead_letters"] != 0 {
                done.errors += 1;
                eprintln!("tick at {url}: {v}");
            }
            if n == 0 {
                // Nothing due, or no room under the target's concurrency: let the others work.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        done
    })
}

/// The source is SIGKILLed while it delivers a large batch (users, groups, then updates,
/// deactivations, membership moves, deletions and reactivations made between kills);
/// after the restarts and once the dead process's leases expire, everything arrives once.
/// One test per backend, so that each stays within a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provisioning_survives_repeated_sigkill_on_sqlite() {
    crash(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provisioning_survives_repeated_sigkill_on_postgres() {
    if pg_available() {
        crash(Backend::Postgres).await;
    }
}

async fn crash(b: Backend) {
    let started = Instant::now();
    // The application: a directory on a second fedkey process, never killed (on SQLite:
    // the backend under test is the source's).
    let t = Server::start(Backend::Sqlite);
    let app_key = directory_with_inbound(&t, "app", "fedkey").await;
    let app = Reader { base: format!("{}/scim/v2/app", t.url), token: app_key.clone() };
    let proxy = Proxy::start(app.base.clone()).await;
    let mut s = Server::start(b);
    let hr = directory_with_inbound(&s, "acme", "hr").await;
    outbound_trust(&s, "acme", "app", &app_key).await;
    // Ten users per /Bulk request: kills hit bulk requests in flight, and the rows a dead
    // process holds stay few.
    s.set_target(
        "acme/app",
        &proxy.url,
        None,
        &["--concurrency", &CRASH_CONCURRENCY.to_string(), "--bulk", &CRASH_BULK.to_string()],
    );
    let (users, groups) = {
        let acme = Scim { s: &s, dir: "acme".into(), key: hr.clone() };
        let users = create_users(&acme, CRASH_USERS).await;
        let groups = create_groups(&acme, &users, CRASH_GROUPS).await;
        (users, groups)
    };
    eprintln!("crash {b:?}: {} users, {} groups created in {:?}", users.len(), groups.len(), started.elapsed());

    // The test clock restarts from the real time with each process: `shift` keeps time
    // moving forward across restarts.
    let mut shift = Duration::ZERO;
    let mut kills_with_open_requests = 0;
    for (round, step) in KILL_AFTER.iter().enumerate() {
        let goal = proxy.forwarded() + step;
        let last = round + 1 == KILL_AFTER.len();
        let tick = ticker(s.url.clone(), s.token.clone(), Arc::default());
        let deadline = Instant::now() + Duration::from_secs(60);
        // The last kill must hit a delivery in flight (the checks after the loop need rows
        // the dead process still holds); between two ticks it holds none.
        while proxy.forwarded() < goal || (last && proxy.open() == 0) {
            assert!(Instant::now() < deadline, "round {round}: no progress ({} answered)", proxy.forwarded());
            assert!(!tick.is_finished(), "round {round}: the ticker stopped: {}", s.logs());
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        kills_with_open_requests += usize::from(proxy.open() > 0);
        s.restart(&[], &[]);
        tick.abort();
        if !last {
            // Past the dead process's leases (2 min).
            shift += Duration::from_secs(180);
        }
        s.advance(&format!("{}s", shift.as_secs().max(1))).await;
        let st = target_status(&s, "acme").await;
        assert!(st["pending"].as_u64().unwrap() > 0, "round {round}: killed mid-delivery: {st}");
        // Changes made between kills, so the order of deliveries matters.
        let acme = Scim { s: &s, dir: "acme".into(), key: hr.clone() };
        let every = |n: usize| users.iter().enumerate().filter(move |(i, _)| i % n == 0).map(|(_, id)| id.clone());
        match round {
            0 => {
                let ops = every(7)
                    .map(|id| {
                        patch_op(
                            &format!("/Users/{id}"),
                            json!([{"op": "replace", "path": "title", "value": "Senior"}]),
                        )
                    })
                    .collect();
                bulk(&acme, ops).await;
            }
            1 => {
                let mut ops: Vec<Value> = every(10)
                    .map(|id| {
                        patch_op(&format!("/Users/{id}"), json!([{"op": "replace", "path": "active", "value": false}]))
                    })
                    .collect();
                // Ten members of group 0 move to group 1.
                let moving: Vec<&String> = users.iter().step_by(CRASH_GROUPS).skip(1).take(10).collect();
                let mut remove: Vec<Value> = moving
                    .iter()
                    .map(|id| json!({"op": "remove", "path": format!("members[value eq \"{id}\"]")}))
                    .collect();
                ops.push(patch_op(&format!("/Groups/{}", groups[0]), Value::Array(std::mem::take(&mut remove))));
                let add: Vec<Value> = moving.iter().map(|id| json!({"value": id})).collect();
                ops.push(patch_op(
                    &format!("/Groups/{}", groups[1]),
                    json!([{"op": "add", "path": "members", "value": add}]),
                ));
                bulk(&acme, ops).await;
            }
            2 => {
                let mut ops: Vec<Value> = every(14)
                    .map(|id| {
                        patch_op(
                            &format!("/Users/{id}"),
                            json!([{"op": "replace", "path": "title", "value": "Principal"}]),
                        )
                    })
                    .collect();
                ops.extend(every(50).skip(1).map(|id| json!({"method": "DELETE", "path": format!("/Users/{id}")})));
                bulk(&acme, ops).await;
            }
            3 => {
                // Some of those deactivated come back.
                let ops = every(20)
                    .skip(1)
                    .filter(|id| users.iter().position(|u| u == id).is_some_and(|i| i % 50 != 0))
                    .map(|id| {
                        patch_op(&format!("/Users/{id}"), json!([{"op": "replace", "path": "active", "value": true}]))
                    })
                    .collect();
                bulk(&acme, ops).await;
            }
            _ => {}
        }
        eprintln!(
            "crash {b:?}: kill {} after {} answers ({:?}); pending {}",
            round + 1,
            proxy.forwarded(),
            started.elapsed(),
            st["pending"]
        );
    }

    // The last run, before the dead process's leases expire: everything else is delivered,
    // the leased rows wait (and while they fill the target's concurrency, nothing moves).
    let r = s.sync_tick().await;
    assert_eq!((r["retried"].as_u64(), r["dead_letters"].as_u64()), (Some(0), Some(0)), "{r}");
    let held = target_status(&s, "acme").await["pending"].as_u64().unwrap();
    assert!(held >= 1, "the dead process's leased rows are not taken before the lease expires: {r}");
    let leasable = (CRASH_CONCURRENCY * CRASH_BULK) as u64;
    assert!(held <= leasable || r["delivered"] == 0, "only leased rows are left: {held}, {r}");
    eprintln!("crash {b:?}: {held} rows wait for the dead process's leases after {r}");
    let mut drained = false;
    for _ in 0..20 {
        let st = target_status(&s, "acme").await;
        if st["pending"] == 0 && s.sync_status("acme").await["outbox"] == 0 {
            assert_eq!(st["dead_letters"], 0, "{st}");
            drained = true;
            break;
        }
        s.advance("3m").await;
        let r = s.sync_tick().await;
        assert_eq!(r["dead_letters"], 0, "{r}");
    }
    assert!(drained, "the outbox drains");
    eprintln!(
        "crash {b:?}: drained after {:?}, {} answers, {} kills with requests open",
        started.elapsed(),
        proxy.forwarded(),
        kills_with_open_requests
    );
    assert!(kills_with_open_requests >= 1, "some kill hit a request the application was handling");
    assert_target_matches(&s, &hr, &app, &proxy, &users, &groups).await;
    // The audit chain survived the kills.
    let v = s.cli_json(&["audit", "verify"]);
    assert_eq!(v["ok"], true, "{v}");
    drop(t);
}

// ---------------------------------------------------------------- two nodes

/// Starts a second `fedkey serve` on `a`'s database with a copy of its data directory
/// (the same master key) and its own node id.
pub(super) fn second_node(a: &Server, node_id: &str) -> Server {
    second_node_with(a, node_id, &[])
}

/// [`second_node`] with more `serve` flags.
pub(super) fn second_node_with(a: &Server, node_id: &str, extra_args: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_dir(&a.data_dir(), &data);
    let (child, url, stderr) = spawn_serve(&data, &a.db_url, extra_args, &[("FEDKEY_NODE_ID", node_id)]);
    Server { child, url, token: a.token.clone(), dir, db_url: a.db_url.clone(), stderr, _pg: None }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

const TWO_NODE_USERS: usize = 600;

/// Both nodes tick, each in its own loop as their dispatchers would, until the outbox
/// and the work are drained; what each delivered.
async fn both_deliver(a: &Server, b: &Server) -> (u64, u64) {
    let stop: Arc<std::sync::atomic::AtomicBool> = Arc::default();
    let ta = ticker(a.url.clone(), a.token.clone(), stop.clone());
    let tb = ticker(b.url.clone(), b.token.clone(), stop.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    let errors = |s: &Server| s.logs().lines().filter(|l| l.contains("ERROR")).collect::<Vec<_>>().join("\n");
    loop {
        let st = a.sync_status("acme").await;
        if st["outbox"] == 0 && st["targets"][0]["pending"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the outbox drains: {st}\n{}\n{}", errors(a), errors(b));
        assert!(!ta.is_finished() && !tb.is_finished(), "a node stopped: {} {}", a.logs(), b.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ra, rb) = (ta.await.unwrap(), tb.await.unwrap());
    assert_eq!(
        (ra.errors, rb.errors),
        (0, 0),
        "every tick succeeded without dead letters: {ra:?} {rb:?}\n{}\n{}",
        errors(a),
        errors(b)
    );
    (ra.delivered, rb.delivered)
}

/// PATCH requests the application answered, by path.
fn patches_by_path(p: &Proxy) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for s in p.seen() {
        if s.method == "PATCH" && s.status.is_some() {
            *out.entry(s.path).or_insert(0) += 1;
        }
    }
    out
}

/// Two nodes on one PostgreSQL database tick concurrently: every user is created once at
/// the application (counted by the proxy and by the `sync.deliver` records), none is
/// lost, and both nodes delivered some of the work.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_on_one_postgres_deliver_each_change_once() {
    if !pg_available() {
        return;
    }
    let started = Instant::now();
    let t = Server::start(Backend::Sqlite);
    let app_key = directory_with_inbound(&t, "app", "fedkey").await;
    let app = Reader { base: format!("{}/scim/v2/app", t.url), token: app_key.clone() };
    let proxy = Proxy::start(app.base.clone()).await;
    let a = Server::start_with(Backend::Postgres, &[], &[("FEDKEY_NODE_ID", "node-a")]);
    let b = second_node(&a, "node-b");
    let hr = directory_with_inbound(&a, "acme", "hr").await;
    outbound_trust(&a, "acme", "app", &app_key).await;
    // Ten users per /Bulk request: each claim takes at most 80 rows, so both nodes get work.
    a.set_target("acme/app", &proxy.url, None, &["--concurrency", "8", "--bulk", "10"]);
    let (users, groups) = {
        let acme = Scim { s: &a, dir: "acme".into(), key: hr.clone() };
        let users = create_users(&acme, TWO_NODE_USERS).await;
        (users.clone(), create_groups(&acme, &users, 6).await)
    };
    // Node b serves the same directory (same database, same keys).
    let via_b = Scim { s: &b, dir: "acme".into(), key: hr.clone() };
    assert_eq!(via_b.get(&format!("/Users/{}", users[0])).await.status, 200);

    // Each user: one create, and no update (nothing about them changed).
    let (by_a, by_b) = both_deliver(&a, &b).await;
    eprintln!(
        "two nodes: node-a delivered {by_a}, node-b {by_b}, {} requests, at most {} at once, in {:?}",
        proxy.forwarded(),
        proxy.max_open(),
        started.elapsed()
    );
    assert!(by_a > 0 && by_b > 0, "both nodes delivered: a {by_a}, b {by_b}");
    assert!(proxy.max_open() <= 8, "concurrency is a limit across nodes: {}", proxy.max_open());
    assert_target_matches(&a, &hr, &app, &proxy, &users, &groups).await;
    assert_eq!(proxy.count("PATCH", "/Users"), 0, "nothing to update");
    let delivers = audit_all(&a, "sync.deliver").await;
    assert_eq!(by_a + by_b, delivers.len() as u64, "the tick reports count every delivery");
    let delivered: BTreeSet<&str> = delivers.iter().filter_map(|d| d["details"]["id"].as_str()).collect();
    assert!(users.iter().chain(&groups).all(|id| delivered.contains(id.as_str())), "none lost");

    // Changes through node b (every third user's title, five members out of each group),
    // delivered by both: one PATCH per changed user, none for the others.
    let changed: Vec<&String> = users.iter().step_by(3).collect();
    let mut ops: Vec<Value> = changed
        .iter()
        .map(|id| patch_op(&format!("/Users/{id}"), json!([{"op": "replace", "path": "title", "value": "Lead"}])))
        .collect();
    for (g, gid) in groups.iter().enumerate() {
        let out: Vec<Value> = users
            .iter()
            .skip(g)
            .step_by(groups.len())
            .take(5)
            .map(|id| json!({"op": "remove", "path": format!("members[value eq \"{id}\"]")}))
            .collect();
        ops.push(patch_op(&format!("/Groups/{gid}"), Value::Array(out)));
    }
    bulk(&via_b, ops).await;
    let before: BTreeMap<String, usize> = patches_by_path(&proxy);
    let (by_a2, by_b2) = both_deliver(&a, &b).await;
    eprintln!("two nodes, changes: node-a delivered {by_a2}, node-b {by_b2}");
    assert!(by_a2 > 0 && by_b2 > 0, "both nodes delivered: a {by_a2}, b {by_b2}");
    let after = patches_by_path(&proxy);
    let remote: HashMap<String, String> = read_all(&app.base, &app.token, "Users")
        .await
        .iter()
        .map(|r| (r["externalId"].as_str().unwrap().to_owned(), format!("/Users/{}", r["id"].as_str().unwrap())))
        .collect();
    for (i, id) in users.iter().enumerate() {
        let path = &remote[id];
        let sent = after.get(path).copied().unwrap_or(0) - before.get(path).copied().unwrap_or(0);
        let want = usize::from(i % 3 == 0);
        assert_eq!(sent, want, "PATCHes of user {i} ({id})");
    }
    assert_target_matches(&a, &hr, &app, &proxy, &users, &groups).await;
    assert!(proxy.max_open() <= 8, "concurrency is a limit across nodes: {}", proxy.max_open());
    drop(b);
}

// ---------------------------------------------------------------- application groups

/// Forty users of one directory group delivered eight at a time, the group earning an
/// application group through a role rule: the application group is created once and
/// holds all of them; no delivery fails on the race to create it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn role_groups_are_created_once_under_concurrent_deliveries() {
    for b in backends() {
        let t = Server::start(b);
        let app_key = directory_with_inbound(&t, "app", "fedkey").await;
        let s = Server::start(b);
        let hr = directory_with_inbound(&s, "acme", "hr").await;
        outbound_trust(&s, "acme", "app", &app_key).await;
        let acme = Scim { s: &s, dir: "acme".into(), key: hr.clone() };
        let users = create_users(&acme, 40).await;
        let eng = create_groups(&acme, &users, 1).await;
        let proxy = Proxy::start(format!("{}/scim/v2/app", t.url)).await;
        let mapping = json!({"roles": [{"group": "Team 00", "assign": {"appGroup": "eng-app"}}]});
        s.set_target("acme/app", &proxy.url, Some(mapping), &["--concurrency", "8"]);
        let r = s.sync_tick().await;
        assert_eq!(r["dead_letters"], 0, "{r} {}", s.cli_json(&["sync", "dead-letters", "list", "acme"]));
        let mut retried = r["retried"].as_u64().unwrap();
        for _ in 0..5 {
            if target_status(&s, "acme").await["pending"] == 0 {
                break;
            }
            s.advance("1h").await;
            let r = s.sync_tick().await;
            assert_eq!(r["dead_letters"], 0, "{r}");
            retried += r["retried"].as_u64().unwrap();
        }
        let st = target_status(&s, "acme").await;
        assert_eq!((st["pending"].as_u64(), st["dead_letters"].as_u64()), (Some(0), Some(0)), "{st}");
        let app = Reader { base: format!("{}/scim/v2/app", t.url), token: app_key.clone() };
        let app_groups: Vec<Value> = read_all(&app.base, &app.token, "Groups")
            .await
            .into_iter()
            .filter(|g| g["displayName"] == "eng-app")
            .collect();
        assert_eq!(app_groups.len(), 1, "{app_groups:?}");
        assert_eq!(proxy.by_name("POST", "/Groups", 201).get("eng-app"), Some(&1), "created once");
        let (_, g) = app.get(&format!("/Groups/{}", app_groups[0]["id"].as_str().unwrap())).await;
        assert_eq!(super::provisioning::ids_of(&g).len(), users.len(), "{g}");
        eprintln!("role groups {b:?}: {retried} retries");
        assert_target_matches(&s, &hr, &app, &proxy, &users, &eng).await;
    }
}
