//! OpenID SSF state beside the event streams (both backends): the verification slot of a
//! stream is taken once per interval, across nodes, and goes with the stream.

use std::sync::Arc;
use std::time::Duration;

use fedkey_store::ops::events::{Delivery, NewEventStream, StreamKind, StreamStatus};
use serde_json::json;
use sqlx::Row;

use super::{Kind, TestDb, actor, env_on, inbound, open_store, tref};

pub async fn ssf_verification_slots_hold_across_nodes(kind: Kind) {
    let e = env_on(TestDb::new(kind).await).await;
    let s = &e.store;
    let a = actor();
    s.create_directory(&a, "acme").await.unwrap();
    s.create_trust(&a, inbound("acme", "rx")).await.unwrap();
    let trust_id = s.trust(&tref("acme", "rx")).await.unwrap().id;
    let stream = s
        .create_event_stream(
            &a,
            NewEventStream {
                directory: "acme".into(),
                kind: StreamKind::Ssf,
                receiver_trust_id: Some(trust_id),
                delivery: Delivery::Poll,
                endpoint_url: None,
                allow_http: false,
                authorization: None,
                audience: json!("rx"),
                events_requested: vec!["https://schemas.openid.net/secevent/risc/event-type/account-purged".into()],
                description: None,
                status: StreamStatus::Enabled,
            },
        )
        .await
        .unwrap();
    let every = Duration::from_secs(30);
    assert!(s.take_verification_slot(&stream.id, every).await.unwrap(), "the first request gets the slot");
    assert!(!s.take_verification_slot(&stream.id, every).await.unwrap(), "the second within the interval not");
    // Another node shares the slot.
    let other = Arc::new(open_store(&e.t.url, e.keyring.clone(), &e.clock, Duration::from_secs(60)).await);
    assert!(!other.take_verification_slot(&stream.id, every).await.unwrap());
    e.clock.advance(every - Duration::from_secs(1));
    assert!(!other.take_verification_slot(&stream.id, every).await.unwrap(), "29 s later: still taken");
    e.clock.advance(Duration::from_secs(1));
    assert!(other.take_verification_slot(&stream.id, every).await.unwrap(), "30 s later: free again");
    assert!(!s.take_verification_slot(&stream.id, every).await.unwrap());
    // Concurrent requests on two nodes: exactly one wins.
    e.clock.advance(every);
    let (x, y) =
        tokio::join!(s.take_verification_slot(&stream.id, every), other.take_verification_slot(&stream.id, every));
    assert_eq!(u8::from(x.unwrap()) + u8::from(y.unwrap()), 1);
    // The row goes with its stream.
    s.delete_event_stream(&a, &stream.id).await.unwrap();
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM ssf_verifications")
        .fetch_one(s.raw_for_tests().pool())
        .await
        .unwrap()
        .get("n");
    assert_eq!(n, 0);
}
