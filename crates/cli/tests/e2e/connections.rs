//! End-to-end tests: connection hygiene against the real binary, on SQLite and (when
//! reachable) PostgreSQL. Clients that send half a request header and stall are cut off
//! at the header timeout while `/healthz` keeps answering; running out of file
//! descriptors does not spin the accept loop; a client that sends a whole 10 MB body
//! before reading gets the 413 instead of a reset; `/metrics` can require a token.

#[allow(unused_imports)]
use super::*;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn addr(s: &Server) -> String {
    s.url.strip_prefix("http://").unwrap().trim_end_matches('/').to_owned()
}

/// Opens a connection, sends the first half of a request header and then nothing.
async fn stall(addr: &str) -> TcpStream {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").await.unwrap();
    c
}

/// How long until the server closes `c` (EOF or reset), or `None` if it is still open
/// after `within`.
async fn closed_after(mut c: TcpStream, since: Instant, within: Duration) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    let end = tokio::time::Instant::from_std(since + within);
    loop {
        match tokio::time::timeout_at(end, c.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(since.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

async fn healthz(url: &str) -> Option<u16> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    client.get(format!("{url}/healthz")).send().await.ok().map(|r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_request_headers_are_cut_off_while_healthz_answers() {
    for b in backends() {
        let s = Server::start_with(b, &["--header-read-timeout", "2s"], &[]);
        let a = addr(&s);
        let started = Instant::now();
        let mut stalled = Vec::new();
        for _ in 0..200 {
            stalled.push(stall(&a).await);
        }
        // While 200 connections hold half a header, the server still answers.
        for _ in 0..3 {
            assert_eq!(healthz(&s.url).await, Some(200), "{b:?}: /healthz during the stall");
        }
        let waits: Vec<_> =
            stalled.into_iter().map(|c| tokio::spawn(closed_after(c, started, Duration::from_secs(8)))).collect();
        for w in waits {
            let after = w.await.unwrap();
            let after = after.unwrap_or_else(|| panic!("{b:?}: a stalled connection is still open after 8 s"));
            // Cut off by the 2 s header timeout (plus scheduling slack), not at once.
            assert!(
                after >= Duration::from_millis(1500) && after < Duration::from_secs(5),
                "{b:?}: closed after {after:?}"
            );
        }
        assert_eq!(healthz(&s.url).await, Some(200));
    }
}

/// Lowers the open-file limit of a running process to `headroom` above what it uses now.
fn squeeze_file_descriptors(pid: u32, headroom: usize) {
    let open = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    let limit = open + headroom;
    let out =
        Command::new("prlimit").args([&format!("--pid={pid}"), &format!("--nofile={limit}:{limit}")]).output().unwrap();
    assert!(out.status.success(), "prlimit: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_does_not_spin_the_accept_loop() {
    for b in backends() {
        let s = Server::start_with(b, &["--header-read-timeout", "2s", "--max-connections", "1000"], &[]);
        let a = addr(&s);
        assert_eq!(healthz(&s.url).await, Some(200));
        squeeze_file_descriptors(s.child.id(), 20);
        // Far more stalled connections than descriptors left: accept fails with EMFILE.
        let mut stalled = Vec::new();
        for _ in 0..100 {
            stalled.push(stall(&a).await);
        }
        // Connections wait in the backlog until the header timeout frees descriptors;
        // /healthz gets its turn (bounded wait), and the loop paused instead of spinning.
        let started = Instant::now();
        let mut answered = false;
        while started.elapsed() < Duration::from_secs(40) {
            if healthz(&s.url).await == Some(200) {
                answered = true;
                break;
            }
        }
        drop(stalled);
        let logs = s.logs();
        let lines = logs.lines().filter(|l| l.contains("accept failed")).count();
        assert!(logs.contains("accept failed"), "{b:?}: the fd limit was never hit:\n{logs}");
        assert!(lines <= 10, "{b:?}: {lines} accept-failure log lines in {:?}", started.elapsed());
        assert!(answered, "{b:?}: /healthz never answered once descriptors were freed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_wait_and_are_served_when_a_slot_frees() {
    let s = Server::start_with(Backend::Sqlite, &["--header-read-timeout", "2s", "--max-connections", "20"], &[]);
    let a = addr(&s);
    let started = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..20 {
        stalled.push(stall(&a).await);
    }
    // Every slot is held: the next connection waits in the backlog, then is served once
    // the header timeout has cut the stalled ones off.
    assert_eq!(healthz(&s.url).await, Some(200));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1500), "served after {waited:?}, before any slot was free");
    drop(stalled);
    assert!(!s.logs().contains("accept failed"));
}

/// Sends `head` and then all of `body` before reading anything, the way a simple client
/// does; returns the whole response (an error if the connection was reset).
async fn send_then_read(addr: &str, head: &str, body: &[u8]) -> std::io::Result<String> {
    let mut c = TcpStream::connect(addr).await?;
    c.write_all(head.as_bytes()).await?;
    c.write_all(body).await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), c.read_to_end(&mut out)).await??;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in body.chunks(64 * 1024) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_ten_megabytes_reads_the_413() {
    for b in backends() {
        let (s, key) = scim_server(b, None).await;
        let a = addr(&s);
        let ten = format!("{{\"name\":\"{}\"}}", "a".repeat(10 * 1024 * 1024)).into_bytes();
        let cases = [
            ("/api/v1/directories", s.token.as_str(), "application/json", "\"payload_too_large\""),
            (
                "/scim/v2/acme/Users",
                key.as_str(),
                "application/scim+json",
                "urn:ietf:params:scim:api:messages:2.0:Error",
            ),
        ];
        for (path, token, ct, error) in cases {
            let head = |framing: String| {
                format!(
                    "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Type: {ct}\r\n{framing}\r\n"
                )
            };
            // Declared up front (refused before reading), and chunked (refused once the
            // limit is passed): either way the client reads the answer, not a reset.
            for (framing, body) in [
                (format!("Content-Length: {}\r\n", ten.len()), ten.clone()),
                ("Transfer-Encoding: chunked\r\n".to_owned(), chunked(&ten)),
            ] {
                let what = format!("{b:?} {path} {}", framing.trim());
                let resp = send_then_read(&a, &head(framing), &body).await.unwrap_or_else(|e| panic!("{what}: {e}"));
                assert!(resp.starts_with("HTTP/1.1 413"), "{what}: {}", &resp[..resp.len().min(300)]);
                assert!(resp.to_ascii_lowercase().contains("connection: close"), "{what}: {resp}");
                assert!(resp.contains(error), "{what}: {resp}");
            }
        }
        // Nothing was created, and the server is fine.
        let (_, v) = s.api(reqwest::Method::GET, "/api/v1/directories", Some(&s.token), None).await;
        assert_eq!(v["directories"].as_array().map(Vec::len), Some(1), "{v}");
        assert_eq!(healthz(&s.url).await, Some(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_require_the_configured_token() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metrics-token");
    std::fs::write(&file, "scrape-secret-4f1c\n").unwrap();
    let s = Server::start_with(Backend::Sqlite, &[], &[("FEDKEY_METRICS_TOKEN_FILE", file.to_str().unwrap())]);
    let get = |token: Option<&'static str>| {
        let url = format!("{}/metrics", s.url);
        async move {
            let mut req = reqwest::Client::new().get(url);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(healthz(&s.url).await, Some(200));
    for wrong in [None, Some("scrape-secret"), Some("scrape-secret-4f1c-and-more"), Some(" ")] {
        let (st, body) = get(wrong).await;
        assert_eq!(st, 401, "{wrong:?}");
        assert!(!body.contains("fedkey_http_requests_total"), "{wrong:?}");
    }
    let (st, body) = get(Some("scrape-secret-4f1c")).await;
    assert_eq!(st, 200);
    assert!(body.contains("fedkey_http_requests_total"), "{body}");
    assert!(!s.logs().contains("scrape-secret"), "the token is never logged");
}
