//! Security event streams and the SET queue fed by the outbox (both backends).

use std::time::Duration;

use fedkey_core::{Clock, Timestamp};
use fedkey_crypto::Secret;
use fedkey_store::StoreError;
use fedkey_store::ops::events::{
    CAEP_CREDENTIAL_CHANGE, CAEP_SESSION_REVOKED, RISC_ACCOUNT_DISABLED, RISC_ACCOUNT_PURGED, SCIM_CREATE,
    SCIM_DEACTIVATE, SCIM_DELETE, SCIM_PATCH, SCIM_PUT,
};
use fedkey_store::ops::{Delivery, EventStreamUpdate, NewEventStream, StreamKind, StreamStatus};
use fedkey_store::scim::ResourceWrite;
use serde_json::json;

use super::outbox::{group, user};
use super::{Kind, actor, count_action, env, inbound, verify};

fn stream(kind: StreamKind, delivery: Delivery, events: &[&str]) -> NewEventStream {
    NewEventStream {
        directory: "acme".into(),
        kind,
        receiver_trust_id: None,
        delivery,
        endpoint_url: (delivery == Delivery::Push).then(|| "http://127.0.0.1:9/events".to_owned()),
        allow_http: false,
        authorization: (delivery == Delivery::Push).then(|| Secret::new("Bearer push-secret-1".into())),
        audience: json!("https://receiver.example"),
        events_requested: events.iter().map(|e| (*e).to_owned()).collect(),
        description: None,
        status: StreamStatus::Enabled,
    }
}

fn with(mut w: ResourceWrite, body: serde_json::Value, changed: &[&str]) -> ResourceWrite {
    w.body = body;
    w.changed = changed.iter().map(|c| (*c).to_owned()).collect();
    w
}

/// Fan-out queues one SET per (stream, requested event type); paused streams hold them,
/// disabled ones get nothing, membership-only rows give none.
pub async fn events_fan_out_per_stream_and_type(kind: Kind) {
    let e = env(kind).await;
    let s = &e.store;
    let a = actor();
    let dir = s.create_directory(&a, "acme").await.unwrap();
    let scim_all = [SCIM_CREATE, SCIM_PATCH, SCIM_PUT, SCIM_DELETE, SCIM_DEACTIVATE];
    let scim = s.create_event_stream(&a, stream(StreamKind::Scim, Delivery::Push, &scim_all)).await.unwrap();
    let only_delete =
        s.create_event_stream(&a, stream(StreamKind::Scim, Delivery::Poll, &[SCIM_DELETE])).await.unwrap();
    let ssf = s
        .create_event_stream(
            &a,
            stream(
                StreamKind::Ssf,
                Delivery::Poll,
                &[CAEP_SESSION_REVOKED, RISC_ACCOUNT_DISABLED, RISC_ACCOUNT_PURGED, CAEP_CREDENTIAL_CHANGE],
            ),
        )
        .await
        .unwrap();
    let paused = s.create_event_stream(&a, stream(StreamKind::Scim, Delivery::Poll, &[SCIM_CREATE])).await.unwrap();
    s.set_event_stream_status(&a, &paused.id, StreamStatus::Paused, Some("maintenance")).await.unwrap();
    let off = s.create_event_stream(&a, stream(StreamKind::Scim, Delivery::Poll, &[SCIM_CREATE])).await.unwrap();
    s.set_event_stream_status(&a, &off.id, StreamStatus::Disabled, None).await.unwrap();
    assert!(!scim.has_poll_secret && scim.has_authorization);

    // create; patch that deactivates and sets a password; put; a group with the user (a
    // membership row for the user: no event); delete.
    let ann = s.scim_create(&a, &dir, user("ann@example.com", true)).await.unwrap();
    let off_body = json!({"userName": "ann@example.com", "active": false, "password": "fp"});
    s.scim_patch(&a, &dir, &ann.id, Some(1), with(user("ann@example.com", false), off_body, &["active", "password"]))
        .await
        .unwrap();
    let put_body = json!({"userName": "ann@example.com", "active": false, "password": "fp", "title": "x"});
    s.scim_replace(&a, &dir, &ann.id, Some(2), with(user("ann@example.com", false), put_body, &["title"]))
        .await
        .unwrap();
    s.scim_create(&a, &dir, group("eng", vec![ann.id.clone()])).await.unwrap();
    s.scim_delete(&a, &dir, "User", &ann.id, None).await.unwrap();
    assert!(s.fan_out(100).await.unwrap() >= 5);
    assert_eq!(s.outbox_len().await.unwrap(), 0);

    let types = |v: &[fedkey_store::ops::QueuedEvent]| v.iter().map(|q| q.event_type.clone()).collect::<Vec<_>>();
    let q = s.stream_events(&scim.id, 100).await.unwrap();
    assert_eq!(
        types(&q),
        [SCIM_CREATE, SCIM_PATCH, SCIM_DEACTIVATE, SCIM_PUT, SCIM_CREATE, SCIM_DELETE],
        "one SET per change and requested type, in order (the group's create included)"
    );
    assert_eq!(q[0].subject, json!({"format": "scim", "uri": format!("/Users/{}", ann.id)}));
    assert_eq!(q[1].payload, json!({"attributes": ["active", "password"], "version": "W/\"2\""}));
    assert_eq!(q[3].payload["version"], "W/\"3\"");
    assert_eq!(q[4].subject["uri"].as_str().map(|u| u.starts_with("/Groups/")), Some(true));
    assert_eq!(q[5].payload, json!({}));
    assert_eq!(q[1].txn, q[2].txn, "the SETs of one change share its txn");
    assert_ne!(q[0].txn, q[1].txn);
    let mut jtis: Vec<&String> = q.iter().map(|e| &e.jti).collect();
    jtis.dedup();
    assert_eq!(jtis.len(), q.len(), "every SET has its own jti");
    assert_eq!(q[0].created_at, s.now(), "iat is the time of the write");

    assert_eq!(types(&s.stream_events(&only_delete.id, 100).await.unwrap()), [SCIM_DELETE]);
    let f = s.stream_events(&ssf.id, 100).await.unwrap();
    assert_eq!(
        types(&f),
        [
            CAEP_SESSION_REVOKED,
            RISC_ACCOUNT_DISABLED,
            CAEP_CREDENTIAL_CHANGE,
            CAEP_SESSION_REVOKED,
            RISC_ACCOUNT_PURGED
        ]
    );
    assert_eq!(f[2].payload["credential_type"], "password");
    assert_eq!(f[2].payload["change_type"], "create");
    assert_eq!(f[0].subject["format"], "aliases");
    assert_eq!(s.stream_events(&paused.id, 100).await.unwrap().len(), 2, "a paused stream holds its events");
    assert!(s.stream_events(&off.id, 100).await.unwrap().is_empty(), "a disabled stream gets nothing");
    // A paused stream's events are not handed to pollers or pushers.
    let (held, more) = s.poll_stream_events(&paused.id, 10, &[], &[]).await.unwrap();
    assert!(held.is_empty() && !more);
    assert_eq!(s.event_stream(&scim.id).await.unwrap().unwrap().pending, 6);
    verify(s).await.unwrap();
}

/// Poll: acknowledged and refused SETs go (the refusals audited), `moreAvailable` is
/// right, and a repeated acknowledgement is harmless.
pub async fn events_poll_acks_and_errors(kind: Kind) {
    let e = env(kind).await;
    let s = &e.store;
    let a = actor();
    let dir = s.create_directory(&a, "acme").await.unwrap();
    let p = s.create_event_stream(&a, stream(StreamKind::Scim, Delivery::Poll, &[SCIM_CREATE])).await.unwrap();
    for n in 0..5 {
        s.scim_create(&a, &dir, user(&format!("u{n}"), true)).await.unwrap();
    }
    s.fan_out(100).await.unwrap();
    let (first, more) = s.poll_stream_events(&p.id, 3, &[], &[]).await.unwrap();
    assert_eq!((first.len(), more), (3, true));
    let (again, _) = s.poll_stream_events(&p.id, 3, &[], &[]).await.unwrap();
    assert_eq!(again[0].jti, first[0].jti, "unacknowledged SETs are returned again");
    let acks: Vec<String> = first[..2].iter().map(|e| e.jti.clone()).collect();
    let errs = vec![(first[2].jti.clone(), "invalid_key".to_owned(), "kid unknown".to_owned())];
    let (rest, more) = s.poll_stream_events(&p.id, 10, &acks, &errs).await.unwrap();
    assert_eq!((rest.len(), more), (2, false));
    assert!(rest.iter().all(|r| !acks.contains(&r.jti) && r.jti != first[2].jti));
    assert_eq!(count_action(s, "events.set_error").await, 1);
    // The same acknowledgements again: nothing more goes.
    let (same, _) = s.poll_stream_events(&p.id, 10, &acks, &[]).await.unwrap();
    assert_eq!(same.len(), 2);
    let too_many = vec!["x".to_owned(); 1001];
    assert!(matches!(s.poll_stream_events(&p.id, 10, &too_many, &[]).await, Err(StoreError::Invalid(_))));
    // An SSF-style event put on the stream directly.
    let jti = s
        .enqueue_stream_event(&p.id, "urn:x:verify", json!({"format": "opaque", "id": p.id}), json!({"state": "s"}))
        .await
        .unwrap();
    let (all, _) = s.poll_stream_events(&p.id, 10, &[], &[]).await.unwrap();
    assert_eq!(all.last().map(|e| e.jti.clone()), Some(jti));
    // Poll secrets: issued once, only the latest matches.
    let s1 = s.issue_event_stream_poll_secret(&a, &p.id).await.unwrap();
    assert!(s.event_stream_poll_secret_matches(&p.id, s1.expose()).await.unwrap());
    let s2 = s.issue_event_stream_poll_secret(&a, &p.id).await.unwrap();
    assert!(!s.event_stream_poll_secret_matches(&p.id, s1.expose()).await.unwrap());
    assert!(s.event_stream_poll_secret_matches(&p.id, s2.expose()).await.unwrap());
    assert!(!s.event_stream_poll_secret_matches(&p.id, "").await.unwrap());
    verify(s).await.unwrap();
}

/// Push: leases exclude other nodes until they run out; success deletes, failure backs
/// off and counts on the stream, a refusal drops the SET with an audit record.
pub async fn events_push_leases_and_outcomes(kind: Kind) {
    let e = env(kind).await;
    let s = &e.store;
    let a = actor();
    let dir = s.create_directory(&a, "acme").await.unwrap();
    let p = s.create_event_stream(&a, stream(StreamKind::Scim, Delivery::Push, &[SCIM_CREATE])).await.unwrap();
    for n in 0..3 {
        s.scim_create(&a, &dir, user(&format!("u{n}"), true)).await.unwrap();
    }
    s.fan_out(100).await.unwrap();
    let lease = Duration::from_secs(30);
    let mine = s.claim_push_events("node-a", 10, lease).await.unwrap();
    assert_eq!(mine.len(), 3);
    assert!(s.claim_push_events("node-b", 10, lease).await.unwrap().is_empty(), "leased rows are not handed out twice");
    assert!(s.finish_push_events("node-a", &mine[0]).await.unwrap());
    let retry_at = Timestamp(s.now().0 + 60_000_000);
    s.fail_push_events("node-a", &mine[1], retry_at, "503 Service Unavailable").await.unwrap();
    s.refuse_push_event("node-a", &mine[2], "invalid_request", "bad aud").await.unwrap();
    let st = s.event_stream(&p.id).await.unwrap().unwrap();
    assert_eq!((st.pending, st.consecutive_failures), (1, 1));
    assert!(st.last_error.unwrap().contains("refused"));
    assert!(st.last_delivered_at.is_some());
    assert!(s.claim_push_events("node-b", 10, lease).await.unwrap().is_empty(), "not due before retry_at");
    e.clock.advance(Duration::from_secs(61));
    let later = s.claim_push_events("node-b", 10, lease).await.unwrap();
    assert_eq!((later.len(), later[0].attempts), (1, 1));
    // node-b dies; after its lease runs out node-a takes over, and node-b's late finish is refused.
    e.clock.advance(Duration::from_secs(31));
    let taken = s.claim_push_events("node-a", 10, lease).await.unwrap();
    assert_eq!(taken[0].jti, later[0].jti);
    assert!(!s.finish_push_events("node-b", &later[0]).await.unwrap());
    assert!(s.finish_push_events("node-a", &taken[0]).await.unwrap());
    assert_eq!(s.event_stream(&p.id).await.unwrap().unwrap().consecutive_failures, 0);
    // A paused stream is not pushed; its secret is readable for the pusher (audited).
    s.scim_create(&a, &dir, user("late", true)).await.unwrap();
    s.fan_out(100).await.unwrap();
    s.set_event_stream_status(&a, &p.id, StreamStatus::Paused, None).await.unwrap();
    assert!(s.claim_push_events("node-a", 10, lease).await.unwrap().is_empty());
    let st = s.event_stream(&p.id).await.unwrap().unwrap();
    assert_eq!(s.event_stream_authorization(&a, &st).await.unwrap().unwrap().expose(), "Bearer push-secret-1");
    assert_eq!(count_action(s, "events.stream.secret.read").await, 1);
    assert_eq!(count_action(s, "events.set_error").await, 1);
    verify(s).await.unwrap();
}

/// Stream configuration: validation, updates, trust ownership, delete.
pub async fn events_stream_configuration(kind: Kind) {
    let e = env(kind).await;
    let s = &e.store;
    let a = actor();
    s.create_directory(&a, "acme").await.unwrap();
    s.create_directory(&a, "other").await.unwrap();
    let bad = |f: fn(&mut NewEventStream)| {
        let mut n = stream(StreamKind::Scim, Delivery::Push, &[SCIM_CREATE]);
        f(&mut n);
        n
    };
    for n in [
        bad(|n| n.endpoint_url = None),
        bad(|n| n.events_requested = vec![]),
        bad(|n| n.events_requested = vec![CAEP_SESSION_REVOKED.into()]),
        bad(|n| n.events_requested = vec!["urn:ietf:params:scim:event:prov:create:full".into()]),
        bad(|n| n.audience = json!([])),
        bad(|n| n.audience = json!(7)),
        bad(|n| n.delivery = Delivery::Poll),
    ] {
        assert!(matches!(s.create_event_stream(&a, n).await, Err(StoreError::Invalid(_))));
    }
    let (t, _, _) = s.create_trust(&a, inbound("other", "rx")).await.unwrap();
    let mut foreign = stream(StreamKind::Ssf, Delivery::Poll, &[CAEP_SESSION_REVOKED]);
    foreign.receiver_trust_id = Some(t.id.clone());
    assert!(matches!(s.create_event_stream(&a, foreign.clone()).await, Err(StoreError::Invalid(_))));
    foreign.directory = "other".into();
    let owned = s.create_event_stream(&a, foreign).await.unwrap();
    assert_eq!(s.event_streams("other", Some(StreamKind::Ssf), Some(&t.id)).await.unwrap().len(), 1);
    assert!(s.event_streams("other", Some(StreamKind::Scim), None).await.unwrap().is_empty());

    let p = s.create_event_stream(&a, stream(StreamKind::Scim, Delivery::Push, &[SCIM_CREATE])).await.unwrap();
    let u = EventStreamUpdate {
        delivery: Some(Delivery::Poll),
        authorization: Some(None),
        events_requested: Some(vec![SCIM_DELETE.into(), SCIM_CREATE.into(), SCIM_DELETE.into()]),
        ..Default::default()
    };
    let p2 = s.update_event_stream(&a, &p.id, u).await.unwrap();
    assert_eq!((p2.delivery, p2.endpoint_url.clone(), p2.has_authorization), (Delivery::Poll, None, false));
    assert_eq!(p2.events_requested, [SCIM_CREATE, SCIM_DELETE]);
    let back = EventStreamUpdate { delivery: Some(Delivery::Push), ..Default::default() };
    assert!(matches!(s.update_event_stream(&a, &p.id, back).await, Err(StoreError::Invalid(_))));
    s.delete_event_stream(&a, &p.id).await.unwrap();
    assert!(s.event_stream(&p.id).await.unwrap().is_none());
    assert!(matches!(s.delete_event_stream(&a, &p.id).await, Err(StoreError::NotFound(_))));
    assert_eq!(count_action(s, "events.stream.create").await, 2);
    assert_eq!(count_action(s, "events.stream.update").await, 1);
    let _ = owned;
    let _ = e.clock.now();
    verify(s).await.unwrap();
}
