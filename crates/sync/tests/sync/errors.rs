//! Error classification of target answers and transport failures.

use std::time::Duration;

use fedkey_crypto::Secret;
use fedkey_sync::{ClientError, MAX_RESPONSE_BYTES, ResourceKind, ScimClient, TargetConfig};

use crate::client::{client_for, clock, egress};
use crate::fake::{Canned, Config, Fake, KEY};

async fn answer(fake: &Fake, c: &ScimClient, canned: Canned) -> ClientError {
    fake.push(canned);
    c.get(ResourceKind::User, "some-id").await.unwrap_err()
}

#[tokio::test]
async fn statuses_are_classified() {
    let fake = Fake::start(Config::default()).await;
    let c = client_for(&fake);
    let e = answer(&fake, &c, Canned::scim_error(401, None, "expired")).await;
    assert_eq!(e, ClientError::Unauthorized { detail: "expired".into() });
    let e = answer(&fake, &c, Canned::scim_error(403, None, "scope missing")).await;
    assert_eq!(e, ClientError::Forbidden { detail: "scope missing".into() });
    let e = answer(&fake, &c, Canned::scim_error(404, None, "no such user")).await;
    assert_eq!(e, ClientError::NotFound { detail: "no such user".into() });
    let e = answer(&fake, &c, Canned::scim_error(409, Some("uniqueness"), "taken")).await;
    assert_eq!(e, ClientError::Conflict { scim_type: Some("uniqueness".into()), detail: "taken".into() });
    let e = answer(&fake, &c, Canned::scim_error(412, None, "stale")).await;
    assert_eq!(e, ClientError::PreconditionFailed { detail: "stale".into() });
    assert!(e.retryable(), "the account changed meanwhile: read it again and retry");
    let e = answer(&fake, &c, Canned::scim_error(400, Some("invalidValue"), "bad title")).await;
    assert_eq!(
        e,
        ClientError::Rejected { status: 400, scim_type: Some("invalidValue".into()), detail: "bad title".into() }
    );
    assert!(!e.retryable() && e.retry_after().is_none());

    let e = answer(&fake, &c, Canned::scim_error(429, None, "slow down").header("retry-after", "120")).await;
    assert_eq!(e, ClientError::RateLimited { retry_after: Some(Duration::from_secs(120)) });
    assert!(e.retryable());
    // The fake clock stands at 1_700_000_000 s = Tue, 14 Nov 2023 22:13:20 GMT.
    let e = answer(&fake, &c, Canned::scim_error(429, None, "").header("retry-after", "Tue, 14 Nov 2023 22:13:50 GMT"))
        .await;
    assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
    let e = answer(&fake, &c, Canned::scim_error(429, None, "").header("retry-after", "whenever")).await;
    assert_eq!(e, ClientError::RateLimited { retry_after: None });

    let e = answer(&fake, &c, Canned::scim_error(500, None, "boom")).await;
    assert_eq!(e, ClientError::Unavailable { status: 500, retry_after: None, detail: "boom".into() });
    assert!(e.retryable());
    let e = answer(&fake, &c, Canned::scim_error(503, None, "maintenance").header("retry-after", "5")).await;
    assert_eq!(
        e,
        ClientError::Unavailable {
            status: 503,
            retry_after: Some(Duration::from_secs(5)),
            detail: "maintenance".into()
        }
    );
    // A gateway's HTML error page still classifies, with an empty detail.
    let html = Canned {
        status: 502,
        headers: vec![("content-type", "text/html".into())],
        body: b"<html>bad gateway</html>".to_vec(),
    };
    assert_eq!(
        answer(&fake, &c, html).await,
        ClientError::Unavailable { status: 502, retry_after: None, detail: String::new() }
    );
}

#[tokio::test]
async fn unreadable_and_oversized_answers_are_protocol_errors() {
    let fake = Fake::start(Config::default()).await;
    let c = client_for(&fake);
    let html = Canned {
        status: 200,
        headers: vec![("content-type", "text/html".into())],
        body: b"<html>login</html>".to_vec(),
    };
    assert!(matches!(answer(&fake, &c, html).await, ClientError::Protocol { .. }));
    let garbage =
        Canned { status: 200, headers: vec![("content-type", "application/json".into())], body: b"{\"id\":".to_vec() };
    assert!(matches!(answer(&fake, &c, garbage).await, ClientError::Protocol { .. }));
    let no_id = Canned {
        status: 200,
        headers: vec![("content-type", "application/json".into())],
        body: b"{\"userName\":\"x\"}".to_vec(),
    };
    assert_eq!(answer(&fake, &c, no_id).await, ClientError::Protocol { message: "the resource has no id".into() });
    let mut big = b"{\"id\":\"x\",\"pad\":\"".to_vec();
    big.resize(MAX_RESPONSE_BYTES + 10, b'a');
    big.extend_from_slice(b"\"}");
    let huge = Canned { status: 200, headers: vec![("content-type", "application/scim+json".into())], body: big };
    let e = answer(&fake, &c, huge).await;
    assert_eq!(e, ClientError::TooLarge { limit: MAX_RESPONSE_BYTES }, "{e:?}");
    // A redirect to another origin is refused (it would carry the key elsewhere).
    let redirect =
        Canned { status: 302, headers: vec![("location", "http://127.0.0.1:1/elsewhere".into())], body: vec![] };
    let e = answer(&fake, &c, redirect).await;
    assert!(matches!(&e, ClientError::Refused { message } if message.contains("another origin")), "{e:?}");
    assert!(!e.retryable());
    // The JSON media type is accepted as well as the SCIM one.
    let plain = Canned {
        status: 200,
        headers: vec![("content-type", "application/json; charset=utf-8".into())],
        body: b"{\"id\":\"p\"}".to_vec(),
    };
    fake.push(plain);
    assert_eq!(c.get(ResourceKind::User, "p").await.unwrap().id, "p");
}

#[tokio::test]
async fn a_target_that_never_answers_times_out() {
    // Accepts connections and never reads or writes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let mut cfg = TargetConfig::bearer(format!("http://{addr}/scim/v2"), Secret::new(KEY.into()));
    cfg.timeout = Duration::from_millis(200);
    let c = ScimClient::new(cfg, egress(), clock()).unwrap();
    let e = c.get(ResourceKind::User, "x").await.unwrap_err();
    assert_eq!(e, ClientError::Timeout);
    assert!(e.retryable());
    holder.abort();
}

#[tokio::test]
async fn refused_connections_are_network_errors() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let c = ScimClient::new(
        TargetConfig::bearer(format!("http://{addr}/scim/v2"), Secret::new(KEY.into())),
        egress(),
        clock(),
    )
    .unwrap();
    let e = c.discover().await.unwrap_err();
    assert!(matches!(e, ClientError::Network { .. }) && e.retryable(), "{e:?}");
    assert!(!e.to_string().contains(KEY));
    assert!(matches!(
        ScimClient::new(TargetConfig::bearer("not a url", Secret::new(KEY.into())), egress(), clock()).err(),
        Some(ClientError::Config { .. })
    ));
}

#[tokio::test]
async fn the_bearer_key_never_appears_in_errors() {
    let fake = Fake::start(Config::default()).await;
    // The fake echoes a rejected credential in its 401 detail.
    let wrong = "fkp_wrong_key_that_the_target_echoes";
    let c = ScimClient::new(TargetConfig::bearer(fake.base_url.clone(), Secret::new(wrong.into())), egress(), clock())
        .unwrap();
    let e = c.get(ResourceKind::User, "x").await.unwrap_err();
    assert!(matches!(e, ClientError::Unauthorized { .. }), "{e:?}");
    for text in [e.to_string(), format!("{e:?}")] {
        assert!(!text.contains(wrong), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }
    // A target echoing the valid key in any error detail.
    let c = client_for(&fake);
    let e = answer(&fake, &c, Canned::scim_error(400, Some("invalidValue"), &format!("token {KEY} lacks scope"))).await;
    assert_eq!(e.to_string(), "the target rejected the request (400, invalidValue): token [redacted] lacks scope");
    let e = answer(&fake, &c, Canned::scim_error(409, None, &format!("Bearer {KEY}"))).await;
    assert!(!format!("{e} {e:?}").contains(KEY));
}

#[tokio::test]
async fn a_streamed_body_without_length_is_cut_at_the_cap() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Answers with a chunked body (no Content-Length) that never ends below the cap.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "client closed early");
            req.extend_from_slice(&buf[..n]);
        }
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/scim+json\r\ntransfer-encoding: chunked\r\n\r\n";
        if s.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b' '; 1024 * 1024];
        // Six 1 MiB chunks: the client must stop reading after four.
        for _ in 0..6 {
            let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
            framed.extend_from_slice(&chunk);
            framed.extend_from_slice(b"\r\n");
            if s.write_all(&framed).await.is_err() {
                return;
            }
        }
        let _ = s.write_all(b"0\r\n\r\n").await;
    });
    let c = ScimClient::new(
        TargetConfig::bearer(format!("http://{addr}/scim/v2"), Secret::new(KEY.into())),
        egress(),
        clock(),
    )
    .unwrap();
    let e = c.get(ResourceKind::User, "x").await.unwrap_err();
    assert_eq!(e, ClientError::TooLarge { limit: MAX_RESPONSE_BYTES }, "{e:?}");
    server.abort();
}
