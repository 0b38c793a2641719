//! Audit sink cursors: one node at a time holds a sink's lease, only the holder moves the
//! cursor, a lapsed or released lease goes to another node, which resumes from the cursor;
//! the status shows cursor, lag and the last error (both backends).

use std::sync::Arc;
use std::time::Duration;

use super::{Kind, TestDb, actor, env_on, open_store};

const TTL: Duration = Duration::from_secs(30);

pub async fn audit_sink_leases_exclude_other_nodes(kind: Kind) {
    let e = env_on(TestDb::new(kind).await).await;
    let (a, b) = (&e.store, Arc::new(open_store(&e.t.url, e.keyring.clone(), &e.clock, TTL).await));
    for d in ["one", "two", "three"] {
        a.create_directory(&actor(), d).await.unwrap();
    }
    let (head, _) = a.audit_head().await.unwrap();
    assert!(head >= 3);

    // Node a takes the new sink, from the start of the log; node b is kept off.
    assert_eq!(a.audit_sink_claim("siem", "node-a", TTL).await.unwrap(), Some(0));
    assert_eq!(b.audit_sink_claim("siem", "node-b", TTL).await.unwrap(), None);
    assert!(!b.audit_sink_advance("siem", "node-b", head).await.unwrap(), "only the holder moves the cursor");
    a.audit_sink_failed("siem", "node-a", "cannot connect to 127.0.0.1:1: refused").await.unwrap();
    let st = a.audit_sink_status().await.unwrap();
    assert_eq!((st[0].cursor, st[0].lag, st[0].failures), (0, head, 1));
    assert_eq!(st[0].lease_owner.as_deref(), Some("node-a"));
    assert!(st[0].last_error.as_deref().unwrap().contains("refused"));

    assert!(a.audit_sink_advance("siem", "node-a", 2).await.unwrap());
    assert!(!a.audit_sink_advance("siem", "node-a", 1).await.unwrap(), "the cursor never moves back");
    let st = b.audit_sink_status().await.unwrap();
    assert_eq!((st[0].cursor, st[0].lag, st[0].failures, st[0].last_error.clone()), (2, head - 2, 0, None));

    // A lapsed lease goes to the other node, which resumes from the cursor; the old
    // holder can no longer move it.
    e.clock.advance(TTL + Duration::from_secs(1));
    assert_eq!(b.audit_sink_claim("siem", "node-b", TTL).await.unwrap(), Some(2));
    assert_eq!(a.audit_sink_claim("siem", "node-a", TTL).await.unwrap(), None);
    assert!(!a.audit_sink_advance("siem", "node-a", head).await.unwrap());
    assert!(b.audit_sink_advance("siem", "node-b", head).await.unwrap());
    // A released lease is free at once.
    b.audit_sink_release("siem", "node-b").await.unwrap();
    assert_eq!(a.audit_sink_claim("siem", "node-a", TTL).await.unwrap(), Some(head));
    let st = a.audit_sink_status().await.unwrap();
    assert_eq!((st.len(), st[0].lag), (1, 0));
}
