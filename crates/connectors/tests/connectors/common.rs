//! Shared test support: a recording fake HTTP peer, and the OpenBao dev server launcher.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use fedkey_core::clock::Timestamp;
use fedkey_crypto::Secret;

/// A fixed "now" for tests that do not move time: 2026-07-14T02:13:20Z.
pub const NOW: Timestamp = Timestamp(1_784_000_000_000_000);

pub const KEY: &str = "fkp_7Qm2xVb9Kd4Rt6Yw1Zp3Ns8Lc5Hj0Fg2a1B9c";

pub fn key() -> Secret {
    Secret::new(KEY.to_owned())
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }

    /// `application/x-www-form-urlencoded` body as (name, value) pairs.
    pub fn form(&self) -> Vec<(String, String)> {
        std::str::from_utf8(&self.body)
            .unwrap()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect()
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply { status, headers: vec![("content-type".into(), "application/json".into())], body: body.to_string() }
    }

    pub fn empty(status: u16) -> Reply {
        Reply { status, headers: Vec::new(), body: String::new() }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// What the fake does with the next request whose path contains a given fragment.
#[derive(Debug, Clone)]
pub enum Canned {
    Reply(Reply),
    /// Accept the request and never answer.
    Hang,
}

type Behaviour = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

struct PeerState {
    recorded: Mutex<Vec<Recorded>>,
    canned: Mutex<VecDeque<(String, Canned)>>,
    behaviour: Behaviour,
}

/// An in-process HTTP peer on 127.0.0.1:0 that records every request and answers with its
/// behaviour unless a canned answer is queued for that path. Stops when dropped.
pub struct FakePeer {
    pub url: String,
    state: Arc<PeerState>,
    task: tokio::task::JoinHandle<()>,
}

impl FakePeer {
    pub async fn start(behaviour: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> FakePeer {
        let state = Arc::new(PeerState {
            recorded: Mutex::new(Vec::new()),
            canned: Mutex::new(VecDeque::new()),
            behaviour: Arc::new(behaviour),
        });
        let app = axum::Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakePeer { url: format!("http://{addr}"), state, task }
    }

    /// The next request whose path contains `path_fragment` gets `canned`.
    pub fn queue(&self, path_fragment: &str, canned: Canned) {
        self.state.canned.lock().unwrap().push_back((path_fragment.to_owned(), canned));
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.recorded.lock().unwrap().clone()
    }

    pub fn count(&self, path_fragment: &str) -> usize {
        self.requests().iter().filter(|r| r.path.contains(path_fragment)).count()
    }
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(state): State<Arc<PeerState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap().to_vec();
    let rec = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
    };
    state.recorded.lock().unwrap().push(rec.clone());
    let canned = {
        let mut q = state.canned.lock().unwrap();
        let pos = q.iter().position(|(frag, _)| rec.path.contains(frag.as_str()));
        pos.and_then(|i| q.remove(i)).map(|(_, c)| c)
    };
    let reply = match canned {
        Some(Canned::Hang) => std::future::pending().await,
        Some(Canned::Reply(r)) => r,
        None => (state.behaviour)(&rec),
    };
    let mut resp = Response::builder().status(StatusCode::from_u16(reply.status).unwrap());
    for (k, v) in &reply.headers {
        resp = resp.header(k.as_str(), v.as_str());
    }
    resp.body(Body::from(reply.body)).unwrap()
}

/// The egress policy with nothing opened (the fakes listen on loopback).
pub fn egress() -> fedkey_egress::Egress {
    fedkey_egress::Egress::strict().unwrap()
}

/// A client with no global timeout, for the tests' own calls to OpenBao.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

// ---------------------------------------------------------------------------------------
// OpenBao

/// A `bao server -dev` child on a free loopback port; killed (only it) on drop.
pub struct Bao {
    child: Child,
    pub addr: String,
    pub root_token: String,
}

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_bao() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FEDKEY_BAO_BIN") {
        return Some(PathBuf::from(p));
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = repo.join(".venv-tools/bin/bao");
    if venv.is_file() {
        return Some(venv);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("bao")).find(|p| p.is_file())
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Starts a dev server, or returns `None` (after a loud notice) when `bao` is not installed
/// outside CI. Under `CI=true` a missing binary fails the test.
pub async fn start_bao() -> Option<Bao> {
    let Some(bin) = find_bao() else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("OpenBao `bao` binary not found and CI=true: run scripts/install-tools.sh or set FEDKEY_BAO_BIN");
        }
        eprintln!("SKIPPED: OpenBao tests — run scripts/install-tools.sh");
        return None;
    };
    let root_token = format!("root-{}", hex::encode(*fedkey_crypto::random::bytes::<16>().unwrap()));
    // The port is free when chosen, but another test can take it (or the one after it, which
    // a dev server also binds for its cluster listener) before bao does: bao then exits at
    // once, and a new port is tried.
    for _ in 0..5 {
        if let Some(bao) = try_start_bao(&bin, &root_token).await {
            return Some(bao);
        }
    }
    panic!("bao server exited early on five free ports in a row");
}

/// One start on a fresh port: `None` when bao exited before it was healthy.
async fn try_start_bao(bin: &std::path::Path, root_token: &str) -> Option<Bao> {
    let port = free_port();
    let addr = format!("http://127.0.0.1:{port}");
    let child = Command::new(bin)
        .args(["server", "-dev", &format!("-dev-listen-address=127.0.0.1:{port}")])
        .arg(format!("-dev-root-token-id={root_token}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let mut bao = Bao { child, addr, root_token: root_token.to_owned() };
    let client = http();
    for _ in 0..200 {
        if let Some(status) = bao.child.try_wait().unwrap() {
            eprintln!("bao server on port {port} exited early ({status}); trying another port");
            return None;
        }
        let health = client.get(format!("{}/v1/sys/health", bao.addr)).timeout(Duration::from_secs(1)).send().await;
        if health.is_ok_and(|r| r.status() == 200) {
            return Some(bao);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("bao server at {} not healthy within 10 s", bao.addr);
}

/// A raw OpenBao API call with the root token, for test set-up and tampering.
pub async fn bao_api(
    bao: &Bao,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = http().request(method, format!("{}/v1/{path}", bao.addr)).header("X-Vault-Token", &bao.root_token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, if text.is_empty() { serde_json::Value::Null } else { serde_json::from_str(&text).unwrap() })
}
