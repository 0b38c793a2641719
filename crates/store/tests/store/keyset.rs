//! Keyset pages (`ListQuery::after`, behind RFC 9865 cursors): a walk interleaved with
//! creates and deletes — some from a second node whose clock lags, so their creation times
//! fall behind the walk's position — sees every resource that exists throughout exactly
//! once and repeats none (both backends).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use fedkey_core::ManualClock;
use fedkey_store::StoreError;
use fedkey_store::scim::{ListKey, ListQuery};
use serde_json::json;

use super::{Kind, T0, TestDb, actor, env_on, open_store, user_write};

/// Walks users `name sw "u"` (when `filtered`) or all users, `page` at a time, calling
/// `between(step)` after every page; returns the ids seen, in order.
async fn walk<F, Fut>(s: &fedkey_store::Store, dir: &str, page: i64, filtered: bool, mut between: F) -> Vec<String>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let rt = fedkey_scim::schema::resource_type("User").unwrap();
    let filter = filtered.then(|| {
        let f = fedkey_scim::filter::parse(r#"userName sw "u""#).unwrap();
        s.scim_filter_sql(rt, &f).unwrap()
    });
    let mut seen = Vec::new();
    let mut after: Option<ListKey> = None;
    for step in 0.. {
        let q = ListQuery { filter: filter.clone(), after: after.clone(), limit: page, ..Default::default() };
        let (_, rows) = s.scim_list(dir, "User", &q).await.unwrap();
        assert!(rows.len() as i64 <= page);
        // In key order, strictly after the previous page.
        let keys: Vec<ListKey> = rows.iter().map(ListKey::of).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "page {step} out of order");
        if let (Some(a), Some(first)) = (&after, keys.first()) {
            assert!(first > a, "page {step} starts before the cursor");
        }
        seen.extend(rows.iter().map(|r| r.id.clone()));
        if (rows.len() as i64) < page {
            break;
        }
        after = keys.last().cloned();
        between(step).await;
    }
    seen
}

pub async fn keyset_walk_under_concurrent_writes(kind: Kind) {
    let e = env_on(TestDb::new(kind).await).await;
    let s = &e.store;
    // A second node on the same database whose clock is an hour behind: what it creates
    // sorts before everything the walk has already passed.
    let lagging = ManualClock::new(T0);
    lagging.advance(Duration::from_secs(1));
    e.clock.advance(Duration::from_secs(3600));
    let other = Arc::new(open_store(&e.t.url, e.keyring.clone(), &lagging, Duration::from_secs(60)).await);
    let a = actor();
    let dir = s.create_directory(&a, "acme").await.unwrap();
    let other_dir = other.directory("acme").await.unwrap();
    // 60 users; every third shares its creation time with the previous one, so the id
    // decides their order.
    let mut initial = Vec::new();
    for i in 0..60 {
        if i % 3 != 0 {
            e.clock.advance(Duration::from_millis(10));
        }
        initial.push(s.scim_create(&a, &dir, user_write(&json!({"userName": format!("u{i:03}")}))).await.unwrap().id);
    }
    for filtered in [false, true] {
        let deleted = std::sync::Mutex::new(BTreeSet::new());
        let created: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        let tag = if filtered { "f" } else { "a" };
        let clock = &e.clock;
        let seen = walk(s, &dir.id, 7, filtered, |step| {
            let (initial, deleted, created, dir, other_dir, a) = (&initial, &deleted, &created, &dir, &other_dir, &a);
            let other = other.clone();
            async move {
                // A user at the end (this node) and one far behind the cursor (the lagging node).
                clock.advance(Duration::from_millis(3));
                let w = user_write(&json!({"userName": format!("u-{tag}-new-{step}")}));
                let id = s.scim_create(a, dir, w).await.unwrap().id;
                created.lock().unwrap().push(id);
                let w = user_write(&json!({"userName": format!("u-{tag}-old-{step}")}));
                let id = other.scim_create(a, other_dir, w).await.unwrap().id;
                created.lock().unwrap().push(id);
                // Delete one user already passed and one not reached yet (walks run in
                // creation order, so low indexes are behind, high ones ahead).
                let behind = initial.get(step * 2);
                let ahead = initial.len().checked_sub(1 + step * 2).and_then(|i| initial.get(i));
                for id in [behind, ahead].into_iter().flatten() {
                    if deleted.lock().unwrap().insert(id.clone()) {
                        s.scim_delete(a, dir, "User", id, None).await.unwrap();
                    }
                }
                // And one created during this walk, so creations do not only grow the set.
                let victim = created.lock().unwrap().first().cloned();
                if step % 4 == 3
                    && let Some(id) = victim
                {
                    created.lock().unwrap().remove(0);
                    s.scim_delete(a, dir, "User", &id, None).await.unwrap();
                }
            }
        })
        .await;
        let mut counts = BTreeMap::new();
        for id in &seen {
            *counts.entry(id.as_str()).or_insert(0) += 1;
        }
        let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(repeated.is_empty(), "filtered={filtered}: repeated {repeated:?}");
        let deleted = deleted.into_inner().unwrap();
        let throughout: Vec<&String> = initial.iter().filter(|id| !deleted.contains(*id)).collect();
        assert!(throughout.len() >= 15, "the walk must leave users in place: {}", throughout.len());
        let missed: Vec<_> = throughout.iter().filter(|id| !counts.contains_key(id.as_str())).collect();
        assert!(missed.is_empty(), "filtered={filtered}: missed {missed:?}");
        // Restore the population for the next walk.
        for id in deleted {
            initial.retain(|x| *x != id);
        }
    }
}

pub async fn keyset_pages_are_in_the_default_order_only(kind: Kind) {
    let e = env_on(TestDb::new(kind).await).await;
    let s = &e.store;
    let a = actor();
    let dir = s.create_directory(&a, "acme").await.unwrap();
    for i in 0..5 {
        s.scim_create(&a, &dir, user_write(&json!({"userName": format!("k{i}")}))).await.unwrap();
    }
    let (total, all) = s.scim_list(&dir.id, "User", &ListQuery { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!((total, all.len()), (5, 5));
    // After the second: the last three, and the total still counts every match.
    let q = ListQuery { after: Some(ListKey::of(&all[1])), limit: 10, ..Default::default() };
    let (total, rest) = s.scim_list(&dir.id, "User", &q).await.unwrap();
    assert_eq!(total, 5);
    assert_eq!(rest.iter().map(|r| &r.id).collect::<Vec<_>>(), all[2..].iter().map(|r| &r.id).collect::<Vec<_>>());
    // After the last: nothing.
    let q = ListQuery { after: Some(ListKey::of(&all[4])), limit: 10, ..Default::default() };
    assert!(s.scim_list(&dir.id, "User", &q).await.unwrap().1.is_empty());
    // A key with another order is refused, not silently misapplied.
    let q = ListQuery { after: Some(ListKey::of(&all[1])), limit: 10, descending: true, ..Default::default() };
    assert!(matches!(s.scim_list(&dir.id, "User", &q).await, Err(StoreError::Invalid(_))));
}

/// A keyset page seeks the `(directory_id, resource_type, created_at, id)` index to its key
/// and reads in index order: no sort, no scan of what lies before the key.
pub async fn keyset_pages_seek_the_creation_index(kind: Kind) {
    let e = env_on(TestDb::new(kind).await).await;
    let s = &e.store;
    let dir = s.create_directory(&actor(), "acme").await.unwrap();
    let d = &dir.id;
    let fill = match kind {
        Kind::Sqlite => format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) \
             INSERT INTO scim_resources SELECT '{d}', 'u' || i, 'User', 1, i, i, 'n' || i, NULL, '{{}}', '{{}}' FROM n; ANALYZE;"
        ),
        Kind::Postgres => format!(
            "INSERT INTO scim_resources SELECT '{d}', 'u' || i, 'User', 1, i, i, 'n' || i, NULL, '{{}}', '{{}}' \
             FROM generate_series(1, 5000) i; ANALYZE;"
        ),
    };
    e.exec(&fill).await;
    let q = ListQuery { after: Some(ListKey { created: 4000, id: "u4000".into() }), limit: 201, ..Default::default() };
    let (total, rows) = s.scim_list(d, "User", &q).await.unwrap();
    assert_eq!((total, rows.len(), rows[0].id.as_str()), (5000, 201, "u4001"));
    let text = s.scim_list_plan(d, "User", &q).await.unwrap().join("\n");
    // The page's plan, then the count's (which has no order and no key).
    let seek = match kind {
        Kind::Sqlite => text.lines().any(|l| l.contains("scim_resources_created") && l.contains("(created_at,id)>")),
        Kind::Postgres => text.lines().any(|l| l.contains("Index Cond") && l.contains("ROW(created_at, id) >")),
    };
    assert!(seek, "{kind:?}: the page does not seek the creation index to the key:\n{text}");
    assert!(!text.contains("TEMP B-TREE FOR ORDER BY") && !text.contains("Sort"), "{kind:?}: the page sorts:\n{text}");
}
