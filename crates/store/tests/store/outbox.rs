//! The transactional outbox and the per-target work it fans out to (both backends).

use std::sync::Arc;
use std::time::Duration;

use fedkey_core::Clock;
use fedkey_store::StoreError;
use fedkey_store::ops::{DeadLetterFilter, Delivered, NewSyncTarget};
use fedkey_store::scim::ResourceWrite;
use serde_json::json;

use super::{Kind, TestDb, actor, count_action, env, env_on, open_store, outbound, tref, verify};

pub(super) fn user(name: &str, active: bool) -> ResourceWrite {
    ResourceWrite {
        resource_type: "User",
        name_key: name.to_lowercase(),
        external_id: None,
        body: json!({"userName": name, "active": active}),
        members: None,
        indexed: vec![],
        changed: vec!["userName".into()],
        known: None,
    }
}

pub(super) fn group(name: &str, members: Vec<String>) -> ResourceWrite {
    ResourceWrite {
        resource_type: "Group",
        name_key: name.to_lowercase(),
        external_id: None,
        body: json!({"displayName": name}),
        members: Some(members),
        indexed: vec![],
        changed: vec!["displayName".into(), "members".into()],
        known: None,
    }
}

pub(super) fn target() -> NewSyncTarget {
    NewSyncTarget {
        base_url: "http://127.0.0.1:9/scim/v2".into(),
        allow_http: false,
        oauth: None,
        mapping: json!({}),
        max_attempts: 5,
        concurrency: 2,
        timeout_seconds: 30,
        bulk_max_operations: None,
        reconcile: None,
        users_follow_groups: true,
    }
}

/// Every SCIM write lands in the outbox in its own transaction; a refused write leaves
/// no row; fan-out turns rows into coalesced per-target work and consumes them.
pub async fn outbox_rows_commit_with_their_change(kind: Kind) {
    let e = env(kind).await;
    let s = &e.store;
    let a = actor();
    let dir = s.create_directory(&a, "acme").await.unwrap();
    s.create_trust(&a, outbound("acme", "app", "app-key-1")).await.unwrap();
    let alice = s.scim_create(&a, &dir, user("alice", true)).await.unwrap();
    assert_eq!(s.outbox_len().await.unwrap(), 1);
    // A refused write (uniqueness) changes nothing and records nothing.
    assert!(matches!(s.scim_create(&a, &dir, user("ALICE", true)).await, Err(StoreError::Conflict(_))));
    assert_eq!(s.outbox_len().await.unwrap(), 1, "a failed write leaves no outbox row");
    // A group whose member does not exist is refused: no partial outbox rows either.
    let bad = s.scim_create(&a, &dir, group("eng", vec![alice.id.clone(), "nope".into()])).await;
    assert!(matches!(bad, Err(StoreError::Invalid(_))), "{bad:?}");
    assert_eq!(s.outbox_len().await.unwrap(), 1);
    // A version precondition that fails leaves no row.
    let stale = s.scim_replace(&a, &dir, &alice.id, Some(99), user("alice", false)).await;
    assert!(matches!(stale, Err(StoreError::PreconditionFailed(_))));
    assert_eq!(s.outbox_len().await.unwrap(), 1);
    // The commit itself fails (the audit log refuses the record): the outbox rows, written
    // before it in the same transaction, are rolled back with the change.
    match kind {
        Kind::Sqlite => {
            e.exec("CREATE TRIGGER block BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'blocked'); END;").await
        }
        Kind::Postgres => {
            e.exec("CREATE FUNCTION block_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'blocked'; END; $$").await;
            e.exec("CREATE TRIGGER block BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION block_audit()").await;
        }
    }
    let r = s.scim_create(&a, &dir, user("carol", true)).await;
    assert!(matches!(r, Err(StoreError::AuditUnavailable(_))), "{r:?}");
    let r = s.scim_replace(&a, &dir, &alice.id, None, user("alice", false)).await;
    assert!(matches!(r, Err(StoreError::AuditUnavailable(_))), "{r:?}");
    let r = s.scim_delete(&a, &dir, "User", &alice.id, None).await;
    assert!(matches!(r, Err(StoreError::AuditUnavailable(_))), "{r:?}");
    assert_eq!(s.outbox_len().await.unwrap(), 1, "no outbox row without its change");
    match kind {
        Kind::Sqlite => e.exec("DROP TRIGGER block").await,
        Kind::Postgres => e.exec("DROP TRIGGER block ON audit_log").await,
    }

    // A group with a member: the group and the member (its `groups` changed).
    let bob = s.scim_create(&a, &dir, user("bob", true)).await.unwrap();
    let g = s.scim_create(&a, &dir, group("eng", vec![alice.id.clone()])).await.unwrap();
    assert_eq!(s.outbox_len().await.unwrap(), 4);
    // Membership change: alice out, bob in → group + both users.
    s.scim_replace(&a, &dir, &g.id, None, group("eng", vec![bob.id.clone()])).await.unwrap();
    assert_eq!(s.outbox_len().await.unwrap(), 7);

    // No target yet: fan-out consumes the rows without work.
    assert_eq!(s.fan_out(100).await.unwrap(), 7);
    assert_eq!(s.outbox_len().await.unwrap(), 0);
    // The first target configuration queues every existing resource (initial load).
    s.set_sync_target(&a, &tref("acme", "app"), target()).await.unwrap();
    let work = s.sync_work_of("acme", Some("pending")).await.unwrap();
    assert_eq!(work.len(), 3, "{work:?}");
    assert!(work.iter().all(|w| w.generation == 1 && w.trust == "acme/app"));

    // Deactivating alice, then deleting her: one coalesced row, a leaver since then.
    s.scim_replace(&a, &dir, &alice.id, None, user("alice", false)).await.unwrap();
    s.scim_delete(&a, &dir, "User", &bob.id, None).await.unwrap();
    // bob's delete also records the group he was in.
    assert_eq!(s.outbox_len().await.unwrap(), 3);
    assert_eq!(s.fan_out(2).await.unwrap(), 2, "fan-out takes at most its limit");
    assert_eq!(s.fan_out(100).await.unwrap(), 1);
    let work = s.sync_work_of("acme", None).await.unwrap();
    let w = |id: &str| work.iter().find(|w| w.resource_id == id).unwrap().clone();
    assert_eq!((w(&alice.id).generation, w(&alice.id).deleted), (2, false));
    assert!(w(&alice.id).leaver_since.is_some());
    assert!(w(&bob.id).deleted && w(&bob.id).leaver_since.is_some());
    assert_eq!(w(&g.id).generation, 2);
    let leavers = s.sync_leavers("acme").await.unwrap();
    assert_eq!(leavers.len(), 2);
    // Reactivation clears the leaver record.
    s.scim_replace(&a, &dir, &alice.id, None, user("alice", true)).await.unwrap();
    s.fan_out(100).await.unwrap();
    assert_eq!(s.sync_leavers("acme").await.unwrap().len(), 1);
    assert!(count_action(s, "sync.target.set").await == 1);
    verify(s).await.unwrap();
}

/// Two stores on one database (two nodes), directory `acme` with target `acme/app`, and
/// `users` users and the `groups` fanned out to it; the target's trust id.
async fn two_nodes_with_work(
    kind: Kind,
    users: usize,
    groups: &[&str],
) -> (super::Env, Arc<fedkey_store::Store>, String) {
    let e = env_on(TestDb::new(kind).await).await;
    let other = Arc::new(open_store(&e.t.url, e.keyring.clone(), &e.clock, Duration::from_secs(60)).await);
    let (s, a) = (&e.store, actor());
    let dir = s.create_directory(&a, "acme").await.unwrap();
    let (trust, _, _) = s.create_trust(&a, outbound("acme", "app", "app-key-1")).await.unwrap();
    s.set_sync_target(&a, &tref("acme", "app"), target()).await.unwrap();
    for i in 0..users {
        s.scim_create(&a, &dir, user(&format!("u{i:02}"), true)).await.unwrap();
    }
    for g in groups {
        s.scim_create(&a, &dir, group(g, vec![])).await.unwrap();
    }
    s.fan_out(100).await.unwrap();
    (e, other, trust.id)
}

/// Slots: users share a lease up to `per_slot`, a group takes a slot of its own, and the
/// number of slots in flight (requests at the target) is bounded across stores.
pub async fn outbox_slots_bound_requests_across_owners(kind: Kind) {
    let (e, other, trust_id) = two_nodes_with_work(kind, 10, &["g1", "g2"]).await;
    let (s, a, dir) = (&e.store, actor(), e.store.directory("acme").await.unwrap());
    let ttl = Duration::from_secs(30);
    let leases = |ws: &[fedkey_store::ops::SyncWork]| {
        let mut by: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for w in ws {
            by.entry(w.lease.clone().unwrap()).or_default().push(w.resource_type.clone());
        }
        by.into_values().collect::<Vec<_>>()
    };
    let mine = s.claim_sync_slots(&trust_id, "node-a", 2, 4, ttl).await.unwrap();
    assert_eq!(leases(&mine), vec![vec!["User"; 4]; 2], "two slots of four users");
    assert!(other.claim_sync_slots(&trust_id, "node-b", 2, 4, ttl).await.unwrap().is_empty(), "both slots in flight");
    // One more slot: the two users left (a group does not share their slot).
    let theirs = other.claim_sync_slots(&trust_id, "node-b", 3, 4, ttl).await.unwrap();
    assert_eq!(leases(&theirs), vec![vec!["User"; 2]]);
    let groups = other.claim_sync_slots(&trust_id, "node-b", 5, 4, ttl).await.unwrap();
    assert_eq!(leases(&groups), vec![vec!["Group"], vec!["Group"]], "a slot per group");
    // Only the node that took a slot records its outcome; finishing frees the slot.
    let d = Delivered { remote_id: Some("r-1".into()), remote_active: Some(true), ..Default::default() };
    assert!(!other.finish_sync_work(&a, &mine[0], "node-b", &d).await.unwrap());
    assert!(!other.finish_sync_work(&a, &mine[0], "node", &d).await.unwrap(), "a prefix of the name is not the name");
    for w in mine.iter().filter(|w| w.lease == mine[0].lease) {
        assert!(s.finish_sync_work(&a, w, "node-a", &d).await.unwrap());
    }
    s.scim_create(&a, &dir, user("u10", true)).await.unwrap();
    s.fan_out(100).await.unwrap();
    let next = s.claim_sync_slots(&trust_id, "node-a", 5, 4, ttl).await.unwrap();
    assert_eq!(leases(&next), vec![vec!["User"]], "four of five slots are still in flight");
    verify(s).await.unwrap();
}

/// A node that finds every slot of a target taken by another is left half of them.
pub async fn outbox_slots_are_shared_with_a_waiting_node(kind: Kind) {
    let (e, other, trust_id) = two_nodes_with_work(kind, 10, &[]).await;
    let (s, a) = (&e.store, actor());
    let ttl = Duration::from_secs(30);
    let d = Delivered { remote_id: Some("r".into()), remote_active: Some(true), ..Default::default() };
    let first = s.claim_sync_slots(&trust_id, "node-a", 4, 1, ttl).await.unwrap();
    assert_eq!(first.len(), 4, "alone, a node takes every slot");
    assert!(other.claim_sync_slots(&trust_id, "node-b", 4, 1, ttl).await.unwrap().is_empty());
    for w in &first {
        assert!(s.finish_sync_work(&a, w, "node-a", &d).await.unwrap());
    }
    let again = s.claim_sync_slots(&trust_id, "node-a", 4, 1, ttl).await.unwrap();
    assert_eq!(again.len(), 2, "node-b waits: node-a keeps to half");
    let theirs = other.claim_sync_slots(&trust_id, "node-b", 4, 1, ttl).await.unwrap();
    assert_eq!(theirs.len(), 2, "the other half");
    // Once node-b stops asking, node-a may take every free slot again.
    for w in &again {
        assert!(s.finish_sync_work(&a, w, "node-a", &d).await.unwrap());
    }
    for w in &theirs {
        assert!(other.finish_sync_work(&a, w, "node-b", &d).await.unwrap());
    }
    e.clock.advance(Duration::from_secs(6));
    assert_eq!(s.claim_sync_slots(&trust_id, "node-a", 4, 1, ttl).await.unwrap().len(), 2, "the last two rows");
}

/// Deprovisioning goes first: a leaver and a deleted user queued after a backlog of new
/// users are claimed before it (users still before groups, which need their members'
/// remote ids).
pub async fn outbox_claims_put_deprovisioning_first(kind: Kind) {
    let e = env(kind).await;
    let (s, a) = (&e.store, actor());
    let dir = s.create_directory(&a, "acme").await.unwrap();
    let (trust, _, _) = s.create_trust(&a, outbound("acme", "app", "app-key-1")).await.unwrap();
    s.set_sync_target(&a, &tref("acme", "app"), target()).await.unwrap();
    let ttl = Duration::from_secs(30);
    let old: Vec<String> = [
        s.scim_create(&a, &dir, user("old0", true)).await.unwrap(),
        s.scim_create(&a, &dir, user("old1", true)).await.unwrap(),
    ]
    .into_iter()
    .map(|r| r.id)
    .collect();
    s.fan_out(100).await.unwrap();
    let d = Delivered { remote_id: Some("r".into()), remote_active: Some(true), ..Default::default() };
    for w in s.claim_sync_slots(&trust.id, "node", 2, 1, ttl).await.unwrap() {
        assert!(s.finish_sync_work(&a, &w, "node", &d).await.unwrap());
    }
    // A backlog: new users and a group, then (later) one user leaves and one is deleted.
    e.clock.advance(Duration::from_secs(1));
    for i in 0..6 {
        s.scim_create(&a, &dir, user(&format!("new{i}"), true)).await.unwrap();
    }
    s.scim_create(&a, &dir, group("g", vec![])).await.unwrap();
    s.fan_out(100).await.unwrap();
    e.clock.advance(Duration::from_secs(1));
    s.scim_replace(&a, &dir, &old[0], None, user("old0", false)).await.unwrap();
    s.scim_delete(&a, &dir, "User", &old[1], None).await.unwrap();
    s.fan_out(100).await.unwrap();
    let first = s.claim_sync_slots(&trust.id, "node", 1, 2, ttl).await.unwrap();
    let mut ids: Vec<&str> = first.iter().map(|w| w.resource_id.as_str()).collect();
    ids.sort();
    let mut want: Vec<&str> = old.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(ids, want, "the leaver and the deleted user come before six new users");
    let rest = s.claim_sync_slots(&trust.id, "node", 8, 1, ttl).await.unwrap();
    let types: Vec<&str> = rest.iter().map(|w| w.resource_type.as_str()).collect();
    assert_eq!(types, ["User", "User", "User", "User", "User", "User", "Group"]);
}

/// A group's new member is queued again only at targets whose mapping reads memberships
/// (`users_follow_groups`); every target gets the group.
pub async fn outbox_memberships_reach_users_only_where_the_mapping_reads_them(kind: Kind) {
    let e = env(kind).await;
    let (s, a) = (&e.store, actor());
    let dir = s.create_directory(&a, "acme").await.unwrap();
    let (plain, _, _) = s.create_trust(&a, outbound("acme", "plain", "plain-key-1")).await.unwrap();
    let (roles, _, _) = s.create_trust(&a, outbound("acme", "roles", "roles-key-1")).await.unwrap();
    let plain_target = NewSyncTarget { users_follow_groups: false, ..target() };
    s.set_sync_target(&a, &tref("acme", "plain"), plain_target).await.unwrap();
    s.set_sync_target(&a, &tref("acme", "roles"), target()).await.unwrap();
    let ttl = Duration::from_secs(30);
    let d = Delivered { remote_id: Some("r".into()), remote_active: Some(true), ..Default::default() };
    let u = s.scim_create(&a, &dir, user("u", true)).await.unwrap();
    s.fan_out(100).await.unwrap();
    for t in [&plain.id, &roles.id] {
        for w in s.claim_sync_slots(t, "node", 4, 1, ttl).await.unwrap() {
            assert!(s.finish_sync_work(&a, &w, "node", &d).await.unwrap());
        }
    }
    let g = s.scim_create(&a, &dir, group("g", vec![u.id.clone()])).await.unwrap();
    s.fan_out(100).await.unwrap();
    let queued = |t: String| async move {
        let ws = s.claim_sync_slots(&t, "node", 4, 1, ttl).await.unwrap();
        ws.into_iter().map(|w| (w.resource_type, w.resource_id)).collect::<Vec<_>>()
    };
    assert_eq!(queued(plain.id.clone()).await, [("Group".to_owned(), g.id.clone())]);
    assert_eq!(queued(roles.id.clone()).await, [("User".to_owned(), u.id.clone()), ("Group".to_owned(), g.id)]);
    // A change to the user itself still reaches the target that skipped the membership.
    s.scim_replace(&a, &dir, &u.id, None, user("u", false)).await.unwrap();
    s.fan_out(100).await.unwrap();
    let pending = s.sync_work_of("acme", Some("pending")).await.unwrap();
    assert!(pending.iter().any(|w| w.trust_id == plain.id && w.resource_id == u.id), "{pending:?}");
}

/// Leases: a claimed row is invisible to other owners until its lease expires; only
/// the lease holder can record the outcome; retries back off; dead letters can be
/// retried and discarded; concurrency per target is bounded across stores.
pub async fn outbox_claims_exclude_other_owners(kind: Kind) {
    let t = TestDb::new(kind).await;
    let e = env_on(t).await;
    let s = &e.store;
    let other = Arc::new(open_store(&e.t.url, e.keyring.clone(), &e.clock, Duration::from_secs(60)).await);
    let a = actor();
    let dir = s.create_directory(&a, "acme").await.unwrap();
    let (trust, _, _) = s.create_trust(&a, outbound("acme", "app", "app-key-1")).await.unwrap();
    s.set_sync_target(&a, &tref("acme", "app"), target()).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(s.scim_create(&a, &dir, user(&format!("u{i:02}"), true)).await.unwrap().id);
    }
    // Two consumers fan out concurrently: each outbox row is consumed exactly once.
    let (x, y) = tokio::join!(
        async {
            let mut n = 0;
            loop {
                let k = s.fan_out(3).await.unwrap();
                if k == 0 {
                    break n;
                }
                n += k;
            }
        },
        async {
            let mut n = 0;
            loop {
                let k = other.fan_out(3).await.unwrap();
                if k == 0 {
                    break n;
                }
                n += k;
            }
        }
    );
    assert_eq!(x + y, 20);
    let work = s.sync_work_of("acme", None).await.unwrap();
    assert_eq!(work.iter().map(|w| w.generation).sum::<i64>(), 20, "each event fanned out once");

    let ttl = Duration::from_secs(30);
    let mine = s.claim_sync_work(&trust.id, "node-a", 2, ttl).await.unwrap();
    assert_eq!(mine.len(), 2, "bounded by the target's concurrency");
    // The concurrency bound holds across nodes while the leases are live.
    assert!(other.claim_sync_work(&trust.id, "node-b", 2, ttl).await.unwrap().is_empty());
    assert_eq!(other.claim_sync_work(&trust.id, "node-b", 5, ttl).await.unwrap().len(), 3);
    let theirs = other.claim_sync_work(&trust.id, "node-b", 10, ttl).await.unwrap();
    assert_eq!(theirs.len(), 5);
    assert!(mine.iter().all(|m| !theirs.iter().any(|t| t.resource_id == m.resource_id)));
    // Only the lease holder records an outcome.
    let d = Delivered { remote_id: Some("r-1".into()), remote_active: Some(true), ..Default::default() };
    assert!(!other.finish_sync_work(&a, &mine[0], "node-b", &d).await.unwrap());
    assert!(s.finish_sync_work(&a, &mine[0], "node-a", &d).await.unwrap());
    // After the lease expires, another node may take the work.
    e.clock.advance(Duration::from_secs(31));
    let taken = other.claim_sync_work(&trust.id, "node-b", 100, ttl).await.unwrap();
    assert_eq!(taken.len(), 19);
    assert!(!s.finish_sync_work(&a, &mine[1], "node-a", &d).await.unwrap(), "a lost lease records nothing");
    // Failure with a retry time, then a dead letter.
    let w = taken.iter().find(|w| w.resource_id == mine[1].resource_id).unwrap();
    let later = e.clock.now().saturating_add(Duration::from_secs(60));
    assert!(other.fail_sync_work(&a, w, "node-b", "the target is unavailable (503)", Some(later)).await.unwrap());
    for w in taken.iter().filter(|w| w.resource_id != mine[1].resource_id) {
        assert!(other.finish_sync_work(&a, w, "node-b", &d).await.unwrap());
    }
    assert!(s.claim_sync_work(&trust.id, "node-a", 10, ttl).await.unwrap().is_empty(), "backing off");
    e.clock.advance(Duration::from_secs(60));
    let again = s.claim_sync_work(&trust.id, "node-a", 10, ttl).await.unwrap();
    assert_eq!((again.len(), again[0].attempts), (1, 1));
    assert!(s.fail_sync_work(&a, &again[0], "node-a", "rejected (400)", None).await.unwrap());
    let dead = s.sync_work_of("acme", Some("dead")).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("rejected (400)"));
    assert!(s.claim_sync_work(&trust.id, "node-a", 10, ttl).await.unwrap().is_empty(), "dead letters wait");
    let f = DeadLetterFilter { trust: Some("app".into()), resource_id: None };
    assert_eq!(s.retry_dead_letters(&a, "acme", &f).await.unwrap(), 1);
    let back = s.claim_sync_work(&trust.id, "node-a", 10, ttl).await.unwrap();
    assert_eq!((back.len(), back[0].attempts), (1, 0));
    assert!(s.fail_sync_work(&a, &back[0], "node-a", "rejected (400)", None).await.unwrap());
    assert_eq!(s.discard_dead_letters(&a, "acme", &DeadLetterFilter::default()).await.unwrap(), 1);
    assert!(s.sync_work_of("acme", Some("dead")).await.unwrap().is_empty());
    assert_eq!(count_action(s, "sync.dead_letter").await, 2);
    assert_eq!(count_action(s, "sync.deliver").await, 19);
    // A change while a delivery is in flight keeps the row pending for the new generation.
    let u = &ids[3];
    s.scim_replace(&a, &dir, u, None, user("u03", false)).await.unwrap();
    s.fan_out(100).await.unwrap();
    let w = s.claim_sync_work(&trust.id, "node-a", 10, ttl).await.unwrap();
    assert_eq!(w.len(), 1);
    s.scim_replace(&a, &dir, u, None, user("u03", true)).await.unwrap();
    s.fan_out(100).await.unwrap();
    assert!(s.finish_sync_work(&a, &w[0], "node-a", &d).await.unwrap());
    let w2 = s.claim_sync_work(&trust.id, "node-a", 10, ttl).await.unwrap();
    assert_eq!(w2.len(), 1, "the newer generation is delivered too");
    assert_eq!(w2[0].generation, w[0].generation + 1);
    assert!(s.finish_sync_work(&a, &w2[0], "node-a", &d).await.unwrap());
    // The groups a delivery asks to send again are queued in its transaction: with it,
    // and never without it.
    let g = s.scim_create(&a, &dir, group("team", vec![ids[0].clone()])).await.unwrap().id;
    s.fan_out(100).await.unwrap();
    for _ in 0..10 {
        let ws = s.claim_sync_work(&trust.id, "node-a", 10, ttl).await.unwrap();
        if ws.is_empty() {
            break;
        }
        for w in &ws {
            assert!(s.finish_sync_work(&a, w, "node-a", &d).await.unwrap());
        }
    }
    let row = |id: String| async move {
        s.sync_work_of("acme", None).await.unwrap().into_iter().find(|w| w.resource_id == id).unwrap()
    };
    let before = row(g.clone()).await;
    assert_eq!(before.status, "done");
    s.scim_replace(&a, &dir, &ids[0], None, user("u00", true)).await.unwrap();
    s.fan_out(100).await.unwrap();
    let w = s.claim_sync_work(&trust.id, "node-a", 10, ttl).await.unwrap();
    assert_eq!((w.len(), w[0].resource_id.as_str()), (1, ids[0].as_str()));
    let with = Delivered { requeue_groups: vec![g.clone()], ..d.clone() };
    assert!(!other.finish_sync_work(&a, &w[0], "node-b", &with).await.unwrap());
    assert_eq!(row(g.clone()).await.status, "done", "a lost lease queues nothing");
    assert!(s.finish_sync_work(&a, &w[0], "node-a", &with).await.unwrap());
    let after = row(g.clone()).await;
    assert_eq!((after.status.as_str(), after.generation), ("pending", before.generation + 1));
    verify(s).await.unwrap();
}

/// Recording an outcome needs one pool connection at a time: with every other connection
/// taken (SCIM writers waiting for the write lock, under load), `finish_sync_work` and
/// `fail_sync_work` still complete instead of waiting for a second one while holding the
/// write lock (a deadlock until the pool's 10 s acquire timeout on SQLite).
pub async fn sync_outcomes_need_one_connection(kind: Kind) {
    let e = env(kind).await;
    let s = &e.store;
    let a = actor();
    let dir = s.create_directory(&a, "acme").await.unwrap();
    let (trust, _, _) = s.create_trust(&a, outbound("acme", "app", "app-key-1")).await.unwrap();
    s.set_sync_target(&a, &tref("acme", "app"), target()).await.unwrap();
    for i in 0..2 {
        s.scim_create(&a, &dir, user(&format!("u{i}"), true)).await.unwrap();
    }
    s.fan_out(100).await.unwrap();
    let w = s.claim_sync_work(&trust.id, "node-a", 2, Duration::from_secs(30)).await.unwrap();
    assert_eq!(w.len(), 2);
    let pool = s.raw_for_tests().pool();
    let max = pool.options().get_max_connections() as usize;
    // The writers share one connection of the pool (group commit) once one has written.
    let mut held = Vec::new();
    for _ in 2..max {
        held.push(tokio::time::timeout(Duration::from_secs(5), pool.acquire()).await.unwrap().unwrap());
    }
    let d = Delivered { remote_id: Some("r-1".into()), remote_active: Some(true), ..Default::default() };
    let one = Duration::from_secs(5);
    let done = tokio::time::timeout(one, s.finish_sync_work(&a, &w[0], "node-a", &d)).await;
    assert!(matches!(done, Ok(Ok(true))), "finish with one free connection: {done:?}");
    let failed = tokio::time::timeout(one, s.fail_sync_work(&a, &w[1], "node-a", "unavailable (503)", None)).await;
    assert!(matches!(failed, Ok(Ok(true))), "fail with one free connection: {failed:?}");
    drop(held);
    assert_eq!(count_action(s, "sync.deliver").await, 1);
    assert_eq!(count_action(s, "sync.dead_letter").await, 1);
}
