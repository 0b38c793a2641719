//! End-to-end tests of notifications on the real binary: a provisioning target answering
//! 401 reaches the operator through the signed webhook and through email (a minimal SMTP
//! sink in the test, plain on loopback), and a key version's expiry ahead is notified
//! exactly once per lead time as the test clock moves.

#[allow(unused_imports)]
use super::*;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as TokioBufReader};

use super::provisioning::{directory_with_inbound, outbound_trust, user_body};
use super::rotation::{Receiver, receiver, signed_by};

// ---------------------------------------------------------------- an SMTP sink

/// One message as the sink received it.
#[derive(Debug, Clone)]
struct Mail {
    from: String,
    to: Vec<String>,
    data: String,
}

/// A minimal SMTP server on loopback: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT; no
/// TLS, no authentication. Keeps every message.
struct SmtpSink {
    port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
    _task: tokio::task::JoinHandle<()>,
}

async fn smtp_sink() -> SmtpSink {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
    let keep = mails.clone();
    let task = tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(smtp_session(sock, keep.clone()));
        }
    });
    SmtpSink { port, mails, _task: task }
}

async fn smtp_session(sock: tokio::net::TcpStream, mails: Arc<Mutex<Vec<Mail>>>) {
    let (r, mut w) = sock.into_split();
    let mut lines = TokioBufReader::new(r).lines();
    let _ = w.write_all(b"220 sink ESMTP\r\n").await;
    let mut mail = Mail { from: String::new(), to: Vec::new(), data: String::new() };
    while let Ok(Some(line)) = lines.next_line().await {
        let verb = line.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-sink\r\n250 8BITMIME\r\n",
            "HELO" | "RSET" | "NOOP" => b"250 ok\r\n",
            "MAIL" => {
                mail.from = line.clone();
                b"250 ok\r\n"
            }
            "RCPT" => {
                mail.to.push(line.clone());
                b"250 ok\r\n"
            }
            "DATA" => {
                let _ = w.write_all(b"354 go ahead\r\n").await;
                let mut data = String::new();
                while let Ok(Some(l)) = lines.next_line().await {
                    if l == "." {
                        break;
                    }
                    data.push_str(l.strip_prefix('.').unwrap_or(&l));
                    data.push('\n');
                }
                mail.data = data;
                mails.lock().unwrap().push(std::mem::replace(
                    &mut mail,
                    Mail { from: String::new(), to: Vec::new(), data: String::new() },
                ));
                b"250 queued\r\n"
            }
            "QUIT" => {
                let _ = w.write_all(b"221 bye\r\n").await;
                return;
            }
            _ => b"502 not implemented\r\n",
        };
        if w.write_all(reply).await.is_err() {
            return;
        }
    }
}

impl SmtpSink {
    /// The messages once one satisfies `pred`, waiting up to 10 s (sent in the background).
    async fn wait_for(&self, what: &str, pred: impl Fn(&Mail) -> bool) -> Vec<Mail> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let mails = self.mails.lock().unwrap().clone();
            if mails.iter().any(&pred) {
                return mails;
            }
            assert!(std::time::Instant::now() < deadline, "no {what} mail within 10 s: {mails:?}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

fn check_signed(r: &(axum::http::HeaderMap, String)) {
    let (h, body) = r;
    let ts: i64 = h[fedkey_connectors::webhook::TIMESTAMP_HEADER].to_str().unwrap().parse().unwrap();
    let sig = h[fedkey_connectors::webhook::SIGNATURE_HEADER].to_str().unwrap();
    assert!(signed_by(b"alert-secret", sig, ts, body), "signature of {body}");
    assert!(!signed_by(b"another-secret", sig, ts, body));
}

fn env_for<'a>(hook: &'a Receiver, smtp_port: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("FEDKEY_ALERT_WEBHOOK_URL", hook.url.as_str()),
        ("FEDKEY_ALERT_WEBHOOK_SECRET", "alert-secret"),
        ("FEDKEY_NOTIFY_SMTP_HOST", "127.0.0.1"),
        ("FEDKEY_NOTIFY_SMTP_PORT", smtp_port),
        ("FEDKEY_NOTIFY_SMTP_SECURITY", "none"),
        ("FEDKEY_NOTIFY_SMTP_FROM", "fedkey <fedkey@example.org>"),
        ("FEDKEY_NOTIFY_SMTP_TO", "ops@example.org, oncall@example.org"),
    ]
}

// ---------------------------------------------------------------- tests

/// Issue 17's first acceptance point in one run: after one dispatcher round against a target
/// that answers 401, `doctor` exits non-zero naming the target, `/metrics` shows the dead
/// letter, a signed notification reaches the webhook receiver and an email the SMTP sink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_401_notifies_webhook_and_email() {
    for b in backends() {
        let hook = receiver(0, 200).await;
        let sink = smtp_sink().await;
        let (target, _t) = super::health::refusing_target().await;
        let port = sink.port.to_string();
        let s = Server::start_with(b, &[], &env_for(&hook, &port));
        let hr = directory_with_inbound(&s, "acme", "hr").await;
        outbound_trust(&s, "acme", "app", "app-key-4d1c9e0b7a").await;
        s.set_target("acme/app", &target, None, &[]);
        let acme = Scim { s: &s, dir: "acme".into(), key: hr };
        let r = acme.post("/Users", user_body("alice@acme.test", "Engineer")).await;
        assert_eq!(r.status, 201, "{:?}", r.body);

        // One dispatcher round: the 401 cannot be fixed by retrying, so it is a dead letter…
        let r = s.sync_tick().await;
        assert!(r["dead_letters"].as_u64().unwrap() >= 1, "{b:?}: {r}");
        // …which `doctor` calls critical, naming the target, and `/metrics` counts…
        let out = s.cli(&["doctor"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{b:?}: {text}");
        assert!(text.contains("acme/app") && text.contains("sync_dead_letters"), "{b:?}: {text}");
        let page = super::health::scrape(&s).await;
        let dead = super::health::sample(&page, r#"fedkey_dead_letters{target="acme/app"}"#);
        assert_eq!(dead, Some(1.0), "{b:?}:\n{page}");
        // …and the operator hears of it: a signed webhook…
        let seen = hook.wait_for("dead-letter notification", |body| body.contains("delivery_dead_lettered")).await;
        let (h, body) = seen.iter().find(|(_, b)| b.contains("delivery_dead_lettered")).unwrap();
        check_signed(&(h.clone(), body.clone()));
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["alert"], "delivery_dead_lettered", "{v}");
        assert_eq!(v["details"]["target"], "acme/app", "{v}");
        assert!(v["details"]["cause"].as_str().unwrap().contains("401"), "{v}");
        assert!(!body.contains("app-key-4d1c9e0b7a"), "no secret in the notification: {body}");
        // …and an email to both recipients.
        let mails = sink.wait_for("dead-letter", |m| m.data.contains("delivery_dead_lettered")).await;
        let mail = mails.iter().find(|m| m.data.contains("delivery_dead_lettered")).unwrap();
        assert!(mail.from.contains("fedkey@example.org"), "{mail:?}");
        assert_eq!(mail.to.len(), 2, "{mail:?}");
        assert!(mail.to.iter().any(|t| t.contains("oncall@example.org")), "{mail:?}");
        assert!(mail.data.contains("Subject: [fedkey] delivery_dead_lettered: provisioning to acme/app"), "{mail:?}");
        assert!(mail.data.contains("401"), "{mail:?}");
        assert!(!mail.data.contains("app-key-4d1c9e0b7a"));

        // The same failure again is not news: a second dead letter of the same kind is
        // de-duplicated (one webhook and one mail so far).
        let r = acme.post("/Users", user_body("bob@acme.test", "Engineer")).await;
        assert_eq!(r.status, 201);
        let r = s.sync_tick().await;
        assert!(r["dead_letters"].as_u64().unwrap() >= 1, "{r}");
        let dead = |seen: &[(axum::http::HeaderMap, String)]| {
            seen.iter().filter(|(_, b)| b.contains("delivery_dead_lettered")).count()
        };
        // A later, different event is the marker that the queue has moved past bob's.
        s.cli_json(&["trust", "create", "--directory", "acme", "--name", "marker", "--direction", "inbound"]);
        s.cli_json(&["key", "rotate", "acme/marker", "--overlap", "1h"]);
        s.tick().await;
        let seen = hook.wait_for("marker", |body| body.contains("acme/marker")).await;
        assert_eq!(dead(&seen), 1, "{b:?}: {seen:?}");
        let mails = sink.wait_for("marker", |m| m.data.contains("acme/marker")).await;
        assert_eq!(mails.iter().filter(|m| m.data.contains("delivery_dead_lettered")).count(), 1);
        // Each channel's outcome is audited (the markers went after the dead letter, one
        // send at a time per channel), without the addresses or the URL.
        let sent = super::delivery::audit_all(&s, "notify.sent").await;
        let dead_sent: Vec<&str> = sent
            .iter()
            .filter(|r| r["details"]["event"] == "delivery_dead_lettered")
            .filter_map(|r| r["details"]["channel"].as_str())
            .collect();
        assert_eq!(dead_sent.len(), 2, "{b:?}: {sent:?}");
        assert!(dead_sent.contains(&"webhook") && dead_sent.contains(&"email"), "{b:?}: {sent:?}");
        let text = serde_json::to_string(&sent).unwrap();
        assert!(!text.contains("ops@example.org") && !text.contains(&hook.url), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_expiry_notifies_once_per_lead_time() {
    for b in backends() {
        let hook = receiver(0, 200).await;
        let env = [
            ("FEDKEY_ALERT_WEBHOOK_URL", hook.url.as_str()),
            ("FEDKEY_ALERT_WEBHOOK_SECRET", "alert-secret"),
            ("FEDKEY_NOTIFY_EXPIRY_LEAD_DAYS", "14,7,1"),
        ];
        let s = Server::start_with(b, &[], &env);
        s.acme_entra();
        // Version 1 stays valid for 20 days after the rotation.
        s.cli_json(&["key", "rotate", "acme/entra", "--overlap", "20d"]);
        let leads = || -> Vec<i64> {
            let seen = hook.seen.lock().unwrap();
            seen.iter()
                .filter_map(|(_, body)| {
                    let v: Value = serde_json::from_str(body).ok()?;
                    (v["alert"] == "key_expiring" && v["details"]["trust"] == "acme/entra")
                        .then(|| v["details"]["lead_days"].as_i64().unwrap())
                })
                .collect()
        };
        s.tick().await;
        // Each step: move the clock, run two engine passes (the second must add nothing).
        for (advance, lead) in [("7d", 14), ("6d", 7), ("6d 12h", 1)] {
            s.advance(advance).await;
            s.tick().await;
            s.advance("2m").await;
            s.tick().await;
            let seen = hook
                .wait_for(&format!("{lead}-day notice"), |body| {
                    body.contains("key_expiring") && body.contains(&format!("\"lead_days\":{lead}"))
                })
                .await;
            let notice = seen.iter().find(|(_, body)| body.contains(&format!("\"lead_days\":{lead}"))).unwrap();
            check_signed(notice);
        }
        // Past the expiry: nothing more for this version.
        s.advance("1d").await;
        s.tick().await;
        // A marker event sent after everything above: once it is in, nothing else is coming.
        s.cli_json(&["trust", "create", "--directory", "acme", "--name", "marker", "--direction", "inbound"]);
        s.cli_json(&["key", "rotate", "acme/marker", "--overlap", "1h"]);
        s.advance("2m").await;
        s.tick().await;
        hook.wait_for("marker", |body| body.contains("acme/marker")).await;
        assert_eq!(leads(), [14, 7, 1], "{b:?}: exactly one notification per lead time");
        let sent = super::delivery::audit_all(&s, "notify.sent").await;
        let expiring = sent
            .iter()
            .filter(|r| r["details"]["event"] == "key_expiring")
            .filter(|r| r["details"]["summary"].as_str().unwrap().contains("acme/entra"))
            .count();
        assert_eq!(expiring, 3, "{b:?}: each audited: {sent:?}");
    }
}
