//! The authentication cache across nodes on PostgreSQL: a change made through one store is
//! refused by another store's warm cache at once (LISTEN/NOTIFY), long before the cache
//! TTL; a listener that lost its connection reconnects and drops what it cached. (SQLite
//! serves one node; its in-process invalidation is `auth_cache_invalidation`.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use fedkey_core::{PasswordPolicy, Role, TrustStatus};
use fedkey_crypto::Secret;
use fedkey_store::Store;
use fedkey_store::auth::{AuthFailure, RequestMeta};
use fedkey_store::invalidate::LISTENER_APPLICATION_NAME;

use super::{HOUR, Kind, TestDb, actor, env_on, exec, inbound, loud, open_store, pg_admin_url, rotate, tref};

/// Far longer than any wait below: what is seen in time was not seen through the TTL.
const TTL: Duration = Duration::from_secs(600);
/// How soon another node must refuse a revoked credential.
const DEADLINE: Duration = Duration::from_secs(1);

async fn key_result(s: &Store, dir: &str, key: &Secret) -> Result<(), AuthFailure> {
    s.authenticate_provisioning(dir, Some(key.expose()), &RequestMeta::default()).await.unwrap().map(drop)
}

/// Polls `check` every 10 ms until it holds; returns how long that took, or `None` after
/// `within`. (The bounded wait is the property under test: delivery to another node.)
async fn within<F, Fut>(within: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    loop {
        if check().await {
            return Some(t0.elapsed());
        }
        if t0.elapsed() > within {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn refused_within(s: &Store, dir: &str, key: &Secret, want: AuthFailure, what: &str) {
    let took = within(DEADLINE, || async { key_result(s, dir, key).await == Err(want) }).await;
    let Some(took) = took else {
        panic!("{what}: the other store still answers {:?}", key_result(s, dir, key).await);
    };
    loud(&format!("{what}: refused by the other store after {took:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_another_stores_cache_at_once() {
    if pg_admin_url().await.is_none() {
        loud("*** SKIPPED changes_reach_another_stores_cache_at_once: no PostgreSQL server ***");
        return;
    }
    let e = env_on(TestDb::new(Kind::Postgres).await).await;
    let (s, a) = (&e.store, actor());
    s.create_directory(&a, "acme").await.unwrap();
    let keys: Vec<Secret> = trusts_with_keys(s, &["k1", "k2", "k3"]).await;
    // Opened after those changes, so no notice of them is on its way to it.
    let other = Arc::new(open_store(&e.t.url, e.keyring.clone(), &e.clock, TTL).await);
    for k in &keys {
        assert_eq!(key_result(&other, "acme", k).await, Ok(()), "cached on the other store");
    }
    // A change it is not told of (SQL by hand) stays unseen: the TTL is long.
    exec(&s.db, "UPDATE trusts SET status = 'suspended' WHERE name = 'k1'").await;
    assert_eq!(key_result(&other, "acme", &keys[0]).await, Ok(()), "served from the warm cache");
    exec(&s.db, "UPDATE trusts SET status = 'active' WHERE name = 'k1'").await;

    s.revoke_key(&a, &tref("acme", "k1"), 1).await.unwrap();
    refused_within(&other, "acme", &keys[0], AuthFailure::Revoked, "key revoked").await;
    s.set_trust_status(&a, &tref("acme", "k2"), TrustStatus::Suspended).await.unwrap();
    refused_within(&other, "acme", &keys[1], AuthFailure::TrustSuspended, "trust suspended").await;
    s.delete_trust(&a, &tref("acme", "k3")).await.unwrap();
    refused_within(&other, "acme", &keys[2], AuthFailure::Unknown, "trust deleted").await;

    let meta = RequestMeta::default();
    let (_, tok) = s.create_admin_token(&a, "ops", Role::Operator, Some(HOUR)).await.unwrap();
    assert!(other.authenticate_admin(Some(tok.expose()), &meta).await.unwrap().is_ok());
    s.revoke_admin_token(&a, "ops").await.unwrap();
    let took = within(DEADLINE, || async {
        other.authenticate_admin(Some(tok.expose()), &meta).await.unwrap().err() == Some(AuthFailure::Revoked)
    })
    .await;
    assert!(took.is_some(), "the revoked admin token is refused by the other store");
}

/// Creates one inbound trust per name in `acme`; their keys.
async fn trusts_with_keys(s: &Store, names: &[&str]) -> Vec<Secret> {
    let mut out = Vec::new();
    for n in names {
        let (_, _, k) = s.create_trust(&actor(), inbound("acme", n)).await.unwrap();
        out.push(k.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listener_reconnects_and_drops_the_cache() {
    if pg_admin_url().await.is_none() {
        loud("*** SKIPPED a_lost_listener_reconnects_and_drops_the_cache: no PostgreSQL server ***");
        return;
    }
    let e = env_on(TestDb::new(Kind::Postgres).await).await;
    let (s, a) = (&e.store, actor());
    let other = Arc::new(open_store(&e.t.url, e.keyring.clone(), &e.clock, TTL).await);
    s.create_directory(&a, "acme").await.unwrap();
    let keys = trusts_with_keys(s, &["entra"]).await;
    assert_eq!(key_result(&other, "acme", &keys[0]).await, Ok(()));
    // Revoked behind every store's back (no notice), while the listeners are cut off.
    exec(&s.db, "UPDATE key_versions SET state = 'revoked'").await;
    let listeners = format!(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = '{LISTENER_APPLICATION_NAME}'"
    );
    let killed =
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT pg_terminate_backend(pid) AS k FROM ({listeners}) l")))
            .fetch_all(s.db.pool())
            .await
            .unwrap();
    assert_eq!(killed.len(), 2, "one listener per store");
    let took = within(Duration::from_secs(10), || async {
        key_result(&other, "acme", &keys[0]).await == Err(AuthFailure::Revoked)
    })
    .await;
    let took = took.expect("the reconnected listener dropped the cache");
    loud(&format!("listener reconnected and dropped the cache after {took:?}"));
    // And it hears changes again.
    exec(&s.db, "UPDATE key_versions SET state = 'current'").await;
    let (_, k2) = s.rotate_key(&a, &tref("acme", "entra"), rotate(HOUR)).await.unwrap();
    let k2 = k2.unwrap();
    assert_eq!(key_result(&other, "acme", &k2).await, Ok(()));
    s.revoke_key(&a, &tref("acme", "entra"), 2).await.unwrap();
    refused_within(&other, "acme", &k2, AuthFailure::Revoked, "after reconnecting").await;
}

/// A directory's settings (and its deletion) reach another store's directory cache like an
/// authentication change: the other node applies the new password policy from its next
/// request, not after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_settings_reach_another_stores_cache_at_once() {
    if pg_admin_url().await.is_none() {
        loud("*** SKIPPED directory_settings_reach_another_stores_cache_at_once: no PostgreSQL server ***");
        return;
    }
    let e = env_on(TestDb::new(Kind::Postgres).await).await;
    let (s, a) = (&e.store, actor());
    s.create_directory(&a, "acme").await.unwrap();
    let other = Arc::new(open_store(&e.t.url, e.keyring.clone(), &e.clock, TTL).await);
    assert_eq!(other.directory("acme").await.unwrap().password_policy, PasswordPolicy::Fingerprint, "cached");

    s.set_password_policy(&a, "acme", PasswordPolicy::Refuse).await.unwrap();
    let took =
        within(DEADLINE, || async { other.directory("acme").await.unwrap().password_policy == PasswordPolicy::Refuse })
            .await;
    loud(&format!("password policy seen by the other store after {took:?}"));
    assert!(took.is_some(), "the other store still has the old policy");

    s.delete_directory(&a, "acme", false).await.unwrap();
    let gone = within(DEADLINE, || async { other.directory("acme").await.is_err() }).await;
    assert!(gone.is_some(), "the other store still finds the deleted directory");
}
