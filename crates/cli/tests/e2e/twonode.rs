//! Two `fedkey serve` nodes on one PostgreSQL database: a change made through one node's
//! admin API reaches the other node's authentication cache within 1 s (LISTEN/NOTIFY),
//! with that node's cache TTL set far longer, so only the notification can explain it.

use std::time::{Duration, Instant};

use reqwest::Method as M;

use super::delivery::second_node_with;
use super::provisioning::directory_with_inbound;
use super::{Backend, Server, pg_available};

/// Far longer than the test: node B never drops an entry by age.
const LONG_TTL: &str = "10m";
const DEADLINE: Duration = Duration::from_secs(1);

/// Polls `node` every 20 ms until it answers 401 to `key`; how long after `since` it did,
/// or `None` past the deadline. (The bounded poll is the property under test.)
async fn refused_within_deadline(node: &Server, key: &str, since: Instant) -> Option<Duration> {
    loop {
        if node.scim_status("acme", key).await == 401 {
            return Some(since.elapsed());
        }
        if since.elapsed() > DEADLINE {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_node_is_refused_on_the_other_within_a_second() {
    if !pg_available() {
        return;
    }
    let a = Server::start_with(Backend::Postgres, &["--auth-cache-ttl", LONG_TTL], &[]);
    let b = second_node_with(&a, "node-b", &["--auth-cache-ttl", LONG_TTL]);
    let k1 = directory_with_inbound(&a, "acme", "entra").await;
    let (st, v) = a
        .api(
            M::POST,
            "/api/v1/directories/acme/trusts",
            Some(&a.token),
            Some(serde_json::json!({"name": "okta", "direction": "inbound"})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let k2 = v["key"].as_str().unwrap().to_owned();

    // Used successfully on B, so B has them cached.
    assert_eq!(b.scim_status("acme", &k1).await, 200);
    assert_eq!(b.scim_status("acme", &k2).await, 200);

    // The key is revoked through A's admin API; B refuses it within 1 s of the answer.
    let (st, v) =
        a.api(M::POST, "/api/v1/directories/acme/trusts/entra/keys/1/revoke?force=true", Some(&a.token), None).await;
    let t0 = Instant::now();
    assert_eq!(st, 200, "{v}");
    let took = refused_within_deadline(&b, &k1, t0).await;
    let took =
        took.unwrap_or_else(|| panic!("node B still accepts the revoked key {:?} after the revoke", t0.elapsed()));
    eprintln!("node B refused the revoked key {took:?} after node A answered the revoke");

    // A suspended trust too.
    let (st, v) = a.api(M::POST, "/api/v1/directories/acme/trusts/okta/suspend", Some(&a.token), None).await;
    let t0 = Instant::now();
    assert_eq!(st, 200, "{v}");
    let took = refused_within_deadline(&b, &k2, t0).await;
    assert!(took.is_some(), "node B still accepts the suspended trust's key after {:?}", t0.elapsed());

    // An admin token revoked on A is refused by B's admin API.
    let (st, v) = a
        .api(M::POST, "/api/v1/tokens", Some(&a.token), Some(serde_json::json!({"name": "ops", "role": "operator"})))
        .await;
    assert_eq!(st, 201, "{v}");
    let ops = v["token"].as_str().unwrap().to_owned();
    assert_eq!(b.api(M::GET, "/api/v1/directories", Some(&ops), None).await.0, 200);
    let (st, v) = a.api(M::POST, "/api/v1/tokens/ops/revoke", Some(&a.token), None).await;
    let t0 = Instant::now();
    assert_eq!(st, 200, "{v}");
    let mut status = 200;
    while t0.elapsed() <= DEADLINE {
        status = b.api(M::GET, "/api/v1/directories", Some(&ops), None).await.0;
        if status == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 401, "node B still accepts the revoked admin token after {:?}", t0.elapsed());
}
