//! Audit streaming and access on the real binary: a syslog collector (a TCP listener of
//! the test) that goes away and comes back gets every record in order; a server killed
//! mid-stream resumes from its cursor (at most the batch in flight again); an HTTP
//! collector in Splunk HEC shape gets every record, also after refusing a batch; an
//! auditor token exports JSON lines and CSV through the API and is refused an admin
//! action; `audit tail` prints new records.

use super::*;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method as M;

/// How long a test waits for records to arrive before it fails.
const DEADLINE: Duration = Duration::from_secs(60);

// ------------------------------------------------------------ a syslog collector

/// Records received, per connection, in arrival order: (connection, seq, record).
type Received = Arc<Mutex<Vec<(usize, i64, Value)>>>;

/// An RFC 6587 octet-counting syslog receiver on a fixed port; `stop` closes the
/// listener and every connection (the collector is down), `start` opens it again.
struct Collector {
    port: u16,
    received: Received,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl Collector {
    fn new() -> Collector {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut c = Collector {
            port,
            received: Default::default(),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            connections: Default::default(),
        };
        c.start();
        c
    }

    fn start(&mut self) {
        self.stop = Arc::new(AtomicBool::new(false));
        let listener = TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let (stop, received, conns) = (self.stop.clone(), self.received.clone(), self.connections.clone());
        self.threads.push(std::thread::spawn(move || {
            let mut readers = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        let n = conns.fetch_add(1, Ordering::SeqCst);
                        let (stop, received) = (stop.clone(), received.clone());
                        readers.push(std::thread::spawn(move || read_frames(tcp, n, &stop, &received)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            for r in readers {
                let _ = r.join();
            }
        }));
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
    }

    fn seqs(&self) -> Vec<(usize, i64)> {
        self.received.lock().unwrap().iter().map(|(c, s, _)| (*c, *s)).collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads `LEN SP MSG` frames until stopped or closed; each MSG is RFC 5424 with the
/// record as JSON after the BOM.
fn read_frames(mut tcp: TcpStream, conn: usize, stop: &AtomicBool, received: &Received) {
    tcp.set_nonblocking(false).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 65536];
    while !stop.load(Ordering::SeqCst) {
        match tcp.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => return,
        }
        while let Some(sp) = buf.iter().position(|&b| b == b' ') {
            let len: usize = std::str::from_utf8(&buf[..sp]).unwrap().parse().expect("octet count");
            if buf.len() < sp + 1 + len {
                break;
            }
            let msg = String::from_utf8(buf[sp + 1..sp + 1 + len].to_vec()).unwrap();
            buf.drain(..sp + 1 + len);
            assert!(msg.starts_with("<") && msg.contains(">1 "), "RFC 5424 header: {msg}");
            let (head, json) = msg.split_once('\u{feff}').expect("BOM before the message");
            let v: Value = serde_json::from_str(json).unwrap();
            assert!(head.contains(" fedkey ") && head.contains(v["action"].as_str().unwrap()), "{head}");
            received.lock().unwrap().push((conn, v["seq"].as_i64().unwrap(), v));
        }
    }
    let _ = tcp.shutdown(std::net::Shutdown::Both);
}

// ------------------------------------------------------------ helpers

fn config_file(s_dir: &Path, toml: &str) -> PathBuf {
    let p = s_dir.join("fedkey.toml");
    std::fs::write(&p, toml).unwrap();
    p
}

/// The whole log, read offline from the database (this adds no record).
fn offline_export(s: &Server) -> BTreeMap<i64, Value> {
    let out = s.cli(&["audit", "export", "--offline"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["seq"].as_i64().unwrap(), v))
        .collect()
}

/// Waits until `got()` holds every record of the log (as the database has it), then
/// checks the delivery: on each connection contiguous and increasing; each new
/// connection resumes at or before the next record; together every record, identical
/// to the export. Returns the number of records delivered more than once.
fn wait_all_delivered(s: &Server, got: impl Fn() -> Vec<(usize, i64, Value)>) -> usize {
    let start = Instant::now();
    loop {
        let log = offline_export(s);
        let have = got();
        let seen: std::collections::BTreeSet<i64> = have.iter().map(|(_, q, _)| *q).collect();
        if !log.is_empty() && log.keys().all(|q| seen.contains(q)) {
            return check_order(&log, &have);
        }
        assert!(
            start.elapsed() < DEADLINE,
            "not delivered within {DEADLINE:?}: {} of {} records; logs:\n{}",
            seen.len(),
            log.len(),
            s.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn check_order(log: &BTreeMap<i64, Value>, have: &[(usize, i64, Value)]) -> usize {
    let mut by_conn: BTreeMap<usize, Vec<i64>> = BTreeMap::new();
    for (c, q, v) in have {
        assert_eq!(Some(v), log.get(q), "record {q} as delivered differs from the database's");
        by_conn.entry(*c).or_default().push(*q);
    }
    let mut next = 1;
    let mut dups = 0;
    for (c, qs) in &by_conn {
        assert!(qs[0] <= next, "connection {c} starts at {} but {next} was not delivered: {by_conn:?}", qs[0]);
        for w in qs.windows(2) {
            assert_eq!(w[1], w[0] + 1, "connection {c} skips or reorders: {qs:?}");
        }
        dups += qs.iter().filter(|q| **q < next).count();
        next = next.max(qs[qs.len() - 1] + 1);
    }
    assert_eq!(next, log.keys().last().unwrap() + 1);
    dups
}

async fn sink_status(s: &Server) -> Value {
    let (st, v) = s.api(M::GET, "/api/v1/audit/sinks", Some(&s.token), None).await;
    assert_eq!(st, 200, "{v}");
    v
}

fn scim_key(s: &Server, dir: &str) -> String {
    s.cli_json(&["directory", "create", dir]);
    let t = s.cli_json(&[
        "trust",
        "create",
        "--directory",
        dir,
        "--name",
        "idp",
        "--direction",
        "inbound",
        "--peer-kind",
        "entra",
    ]);
    t["key"].as_str().unwrap().to_owned()
}

// ------------------------------------------------------------ outage

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_syslog_outage_loses_nothing() {
    for b in backends() {
        outage(b).await;
    }
}

async fn outage(b: Backend) {
    let mut collector = Collector::new();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        dir.path(),
        &format!(
            "[[audit_sinks]]\nname = \"siem\"\nurl = \"syslog+tcp://127.0.0.1:{}\"\nbatch_size = 20\nmax_backoff = \"500ms\"\n",
            collector.port
        ),
    );
    let cfg = cfg.to_str().unwrap().to_owned();
    let s = Server::start_with(b, &["--config", &cfg], &[]);
    let key = scim_key(&s, "acme");
    for _ in 0..5 {
        assert_eq!(s.scim_status("acme", &key).await, 200);
    }
    let received = collector.received.clone();
    let got = || received.lock().unwrap().clone();
    assert_eq!(wait_all_delivered(&s, got), 0, "{b:?}: no failure, no repeat");

    // The collector goes away: requests keep being served and audited.
    collector.stop();
    let before = offline_export(&s).len();
    for _ in 0..30 {
        assert_eq!(s.scim_status("acme", &key).await, 200, "{b:?}: a sink outage never blocks requests");
    }
    s.cli_json(&["directory", "create", "during-outage"]);
    let start = Instant::now();
    let status = loop {
        let v = sink_status(&s).await;
        if v["sinks"][0]["failures"].as_i64().unwrap_or(0) >= 2 {
            break v;
        }
        assert!(start.elapsed() < DEADLINE, "{b:?}: the outage was never noticed: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let sink = &status["sinks"][0];
    assert_eq!(sink["sink"], "siem");
    assert!(sink["last_error"].as_str().unwrap().contains("127.0.0.1"), "{status}");
    assert!(sink["lag"].as_i64().unwrap() >= 31, "{b:?}: what waits is visible: {status}");
    assert!(offline_export(&s).len() >= before + 31, "{b:?}: records kept committing");
    // `doctor` warns about the sink (exit 1), naming it.
    let out = s.cli(&["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{b:?}: {text}");
    assert!(text.contains("audit_sink_failing") && text.contains("siem"), "{b:?}: {text}");

    // Back: everything arrives, in order, nothing lost.
    collector.start();
    wait_all_delivered(&s, got);
    let v = sink_status(&s).await;
    assert!(v["sinks"][0]["last_error"].is_null(), "{b:?}: the error clears on delivery: {v}");
    let out = s.cli(&["doctor"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("audit_sink_failing"), "{b:?}: the warning clears");
    assert!(collector.connections.load(Ordering::SeqCst) >= 2, "{b:?}: a new connection after the outage");
    let out = s.cli(&["audit", "verify", "--offline"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

// ------------------------------------------------------------ SIGKILL mid-stream

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_resumes_from_the_cursor() {
    for b in backends() {
        killed_mid_stream(b).await;
    }
}

async fn killed_mid_stream(b: Backend) {
    let collector = Collector::new();
    let dir = tempfile::tempdir().unwrap();
    let batch = 5;
    let cfg = config_file(
        dir.path(),
        &format!(
            "[[audit_sinks]]\nname = \"siem\"\nurl = \"syslog+tcp://127.0.0.1:{}\"\nbatch_size = {batch}\nmax_backoff = \"500ms\"\n",
            collector.port
        ),
    );
    let cfg = cfg.to_str().unwrap().to_owned();
    // The same node name after the restart: the node takes its own lease back at once.
    let env = [("FEDKEY_NODE_ID", "node-a")];
    let mut s = Server::start_with(b, &["--config", &cfg], &env);
    // Some hundreds of records; a batch of 5 at a time takes a few seconds to stream.
    let client = reqwest::Client::new();
    let mut reads = Vec::new();
    for _ in 0..300 {
        let req = client.get(format!("{}/api/v1/directories", s.url)).bearer_auth(&s.token);
        reads.push(tokio::spawn(async move { req.send().await.map(|r| r.status().as_u16()) }));
    }
    for r in reads {
        assert_eq!(r.await.unwrap().unwrap(), 200);
    }
    let total = offline_export(&s).len();
    let start = Instant::now();
    while collector.seqs().len() < 40 {
        assert!(start.elapsed() < DEADLINE, "{b:?}: streaming never started: {}", s.logs());
        std::thread::sleep(Duration::from_millis(10));
    }
    s.restart(&["--config", &cfg], &env);
    let at_kill = collector.seqs().iter().map(|(_, q)| *q).max().unwrap();
    assert!((at_kill as usize) < total, "{b:?}: killed mid-stream ({at_kill} of {total} sent)");

    let received = collector.received.clone();
    let dups = wait_all_delivered(&s, || received.lock().unwrap().clone());
    // Only the batch in flight at the kill (sent, cursor not yet moved) may come again.
    eprintln!("{b:?}: killed with {at_kill} of {total} records streamed; {dups} sent twice after the restart");
    assert!(dups <= batch, "{b:?}: {dups} records repeated, at most one batch of {batch} may");
    let conns: std::collections::BTreeSet<usize> = collector.seqs().iter().map(|(c, _)| *c).collect();
    assert!(conns.len() >= 2, "{b:?}: the restarted server streamed on a new connection");
}

// ------------------------------------------------------------ HTTP collector, HEC shape

/// A minimal HTTP/1.1 collector: answers 503 to the first `refuse` requests, 200 after,
/// and keeps every request it accepted (headers, body).
/// Requests a collector accepted: (request line and headers, body).
type Requests = Arc<Mutex<Vec<(String, String)>>>;

fn hec_collector(refuse: usize) -> (u16, Requests) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Requests = Default::default();
    let seen = got.clone();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { return };
            let (seen, count) = (seen.clone(), count.clone());
            std::thread::spawn(move || {
                while let Some((head, body)) = read_request(&mut tcp) {
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    let status = if n < refuse { "503 Service Unavailable" } else { "200 OK" };
                    if n >= refuse {
                        seen.lock().unwrap().push((head, body));
                    }
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: 27\r\n\r\n{{\"text\":\"Success\",\"code\":0}}"
                    );
                    if tcp.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, got)
}

fn read_request(tcp: &mut TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut b).ok()? == 0 {
            return None;
        }
        buf.push(b[0]);
    }
    let head = String::from_utf8(buf).ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    tcp.read_exact(&mut body).ok()?;
    Some((head, String::from_utf8(body).ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_collector_gets_hec_events() {
    for b in backends() {
        hec(b).await;
    }
}

async fn hec(b: Backend) {
    let (port, got) = hec_collector(2);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("hec.token");
    std::fs::write(&token_file, "11111111-2222-3333-4444-555555555555\n").unwrap();
    let cfg = config_file(
        dir.path(),
        &format!(
            "[[audit_sinks]]\nname = \"splunk\"\nurl = \"http://127.0.0.1:{port}/services/collector/event\"\nformat = \"hec\"\ntoken_file = \"{}\"\nsourcetype = \"fedkey:test\"\nmax_backoff = \"300ms\"\n",
            token_file.display()
        ),
    );
    let cfg = cfg.to_str().unwrap().to_owned();
    let s = Server::start_with(b, &["--config", &cfg], &[]);
    s.cli_json(&["directory", "create", "acme"]);
    let received = got.clone();
    let events = move || -> Vec<(usize, i64, Value)> {
        let reqs = received.lock().unwrap().clone();
        let mut out = Vec::new();
        for (i, (head, body)) in reqs.iter().enumerate() {
            assert!(head.starts_with("POST /services/collector/event HTTP/1.1"), "{head}");
            assert!(
                head.lines()
                    .any(|l| l.eq_ignore_ascii_case("authorization: Splunk 11111111-2222-3333-4444-555555555555")),
                "{head}"
            );
            for line in body.lines() {
                let ev: Value = serde_json::from_str(line).unwrap();
                assert_eq!(ev["sourcetype"], "fedkey:test");
                assert_eq!(ev["source"], "fedkey");
                let secs = ev["time"].as_f64().unwrap();
                let us = ev["event"]["ts_us"].as_i64().unwrap();
                assert!((secs - us as f64 / 1e6).abs() < 0.001, "{ev}");
                out.push((i, ev["event"]["seq"].as_i64().unwrap(), ev["event"].clone()));
            }
        }
        out
    };
    wait_all_delivered(&s, events);
    let v = sink_status(&s).await;
    assert_eq!(v["sinks"][0]["sink"], "splunk");
    assert!(!s.logs().contains("11111111-2222"), "the token is never logged");
}

// ------------------------------------------------------------ export and tail

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_exports_through_the_api_and_tails() {
    for b in backends() {
        auditor_export(b).await;
    }
}

/// Runs the CLI with only a server URL and a token: no data directory, no database.
fn remote(s: &Server, token: &str, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("FEDKEY_DATABASE_URL")
        .env("FEDKEY_DATA_DIR", s.dir.path().join("nowhere"))
        .env("FEDKEY_URL", &s.url)
        .env("FEDKEY_TOKEN", token)
        .output()
        .unwrap()
}

async fn auditor_export(b: Backend) {
    let s = Server::start(b);
    let key = scim_key(&s, "acme");
    assert_eq!(s.scim_status("acme", &key).await, 200);
    let aud = s.cli_json(&["token", "create", "aud", "--role", "auditor"]);
    let aud = aud["token"].as_str().unwrap().to_owned();

    // JSON lines: the same records as the database holds, details once.
    let out = remote(&s, &aud, &["audit", "export", "--format", "jsonl"]);
    assert!(out.status.success(), "{b:?}: {}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let log = offline_export(&s);
    assert!(lines.iter().any(|l| l["action"] == "token.create" && l["outcome"] == "success"), "{b:?}: {lines:?}");
    for l in &lines {
        assert_eq!(Some(l), log.get(&l["seq"].as_i64().unwrap()));
        assert!(l["details"].is_object() && l.get("details_text").is_none(), "details once: {l}");
    }
    assert_eq!(
        lines.iter().map(|l| l["seq"].as_i64().unwrap()).collect::<Vec<_>>(),
        (1..=lines.len() as i64).collect::<Vec<_>>()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("exported {} records", lines.len())), "{stderr}");

    // CSV, filtered.
    let out =
        remote(&s, &aud, &["audit", "export", "--format", "csv", "--action", "key.authenticate", "--since", "1h"]);
    assert!(out.status.success(), "{b:?}: {}", String::from_utf8_lossy(&out.stderr));
    let csv = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(
        rows[0],
        "seq,ts,ts_us,actor,action,outcome,directory,trust,key_version,source,request_id,details,prev_hash,hash"
    );
    assert_eq!(rows.len(), 2, "{csv}");
    assert!(rows[1].contains(",key:acme/idp#1,key.authenticate,success,acme,idp,1,"), "{csv}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("exported 1 records"));

    // Bad input: a clear error, no file left behind.
    let bad_out = s.dir.path().join("bad.csv");
    let out = remote(&s, &aud, &["audit", "export", "--since", "yesterday-ish", "-o", bad_out.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(!bad_out.exists());
    let (st, v) = s.api(M::GET, "/api/v1/audit/export?format=xml", Some(&aud), None).await;
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("jsonl or csv"), "{v}");

    // An admin-only action is refused to the auditor (and audited as denied).
    let out = remote(&s, &aud, &["token", "create", "x", "--role", "admin"]);
    assert!(!out.status.success(), "{b:?}: an auditor may not create tokens");
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"), "{}", String::from_utf8_lossy(&out.stderr));
    let log = offline_export(&s);
    assert!(
        log.values().any(|r| r["action"] == "token.create" && r["outcome"] == "denied" && r["actor"] == "token:aud")
    );
    assert!(
        log.values().any(|r| r["action"] == "audit.export" && r["outcome"] == "success" && r["actor"] == "token:aud")
    );
    assert!(log.values().any(|r| r["action"] == "audit.export" && r["outcome"] == "failure"));

    // tail: the last records, then new ones as they are committed.
    let out = remote(&s, &aud, &["audit", "tail", "-n", "3", "--output", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tailed: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(tailed.len(), 3);
    let mut follow = Command::new(BIN)
        .args(["audit", "tail", "-n", "0", "--follow"])
        .env("FEDKEY_URL", &s.url)
        .env("FEDKEY_TOKEN", &aud)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let printed: Arc<Mutex<Vec<String>>> = Default::default();
    let sink = printed.clone();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(l);
        }
    });
    // `-n 0` follows from the head as of the command's start: wait until its export request
    // is on the record, so the change below comes after that point.
    let start = Instant::now();
    while !offline_export(&s).values().any(|r| r["action"] == "audit.export" && r["details"]["follow"] == true) {
        assert!(start.elapsed() < DEADLINE, "{b:?}: the follower never connected");
        std::thread::sleep(Duration::from_millis(50));
    }
    s.cli_json(&["directory", "create", "tailed-dir"]);
    let start = Instant::now();
    while !printed.lock().unwrap().iter().any(|l| l.contains("directory.create") && l.contains("tailed-dir")) {
        assert!(start.elapsed() < DEADLINE, "{b:?}: tail printed {:?}", printed.lock().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = follow.kill();
    let _ = follow.wait();
    let lines = printed.lock().unwrap().clone();
    assert!(!lines.iter().any(|l| l.contains("key.authenticate")), "{b:?}: -n 0 starts at the head: {lines:?}");
}
