//! Notification de-duplication claims across nodes, and the key versions that expire soon
//! (both backends).

use std::sync::Arc;
use std::time::Duration;

use fedkey_core::Clock;
use fedkey_store::Store;
use fedkey_store::ops::RotateKey;

use super::{Kind, TestDb, actor, env_on, inbound, open_store, tref};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// A claim wins once per key and state: another node's claim of the same is refused, a new
/// state wins at once, the same state again only after the window (or never, for `Once`).
pub async fn notifications_are_claimed_once_across_nodes(kind: Kind) {
    let e = env_on(TestDb::new(kind).await).await;
    let s = &e.store;
    let other = Arc::new(open_store(&e.t.url, e.keyring.clone(), &e.clock, Duration::from_secs(60)).await);
    let window = |st: &Store| Some(st.now().saturating_sub(HOUR));
    assert!(s.claim_notification("dead_letter:t1", "target answered 401", window(s)).await.unwrap());
    assert!(!other.claim_notification("dead_letter:t1", "target answered 401", window(&other)).await.unwrap());
    assert!(other.claim_notification("dead_letter:t1", "target answered 403", window(&other)).await.unwrap());
    e.clock.advance(HOUR - Duration::from_secs(1));
    assert!(!s.claim_notification("dead_letter:t1", "target answered 403", window(s)).await.unwrap());
    e.clock.advance(Duration::from_secs(2));
    assert!(s.claim_notification("dead_letter:t1", "target answered 403", window(s)).await.unwrap());
    assert!(!other.claim_notification("dead_letter:t1", "target answered 403", window(&other)).await.unwrap());
    // Once per state, whatever the time.
    assert!(s.claim_notification("key_expiry:t1:1", "7d", None).await.unwrap());
    e.clock.advance(30 * DAY);
    assert!(!other.claim_notification("key_expiry:t1:1", "7d", None).await.unwrap());
    assert!(other.claim_notification("key_expiry:t1:1", "1d", None).await.unwrap());

    // The previous version of a rotated trust expires at the end of its overlap.
    let a = actor();
    s.create_directory(&a, "acme").await.unwrap();
    s.create_trust(&a, inbound("acme", "entra")).await.unwrap();
    s.rotate_key(&a, &tref("acme", "entra"), RotateKey { overlap: 10 * DAY, outbound_key: None }).await.unwrap();
    let now = e.clock.now();
    assert!(s.expiring_keys(now.saturating_add(9 * DAY)).await.unwrap().is_empty());
    let soon = s.expiring_keys(now.saturating_add(10 * DAY)).await.unwrap();
    assert_eq!(soon.len(), 1, "{soon:?}");
    assert_eq!((soon[0].trust.as_str(), soon[0].version), ("acme/entra", 1));
    assert_eq!(soon[0].expires_at, now.saturating_add(10 * DAY));
    e.clock.advance(10 * DAY);
    assert!(s.expiring_keys(e.clock.now().saturating_add(DAY)).await.unwrap().is_empty(), "expired: no longer ahead");
}
