//! The import's bulk create (`scim_create_many`) and its typed lookups (both backends):
//! every resource with its values, memberships, outbox row and `scim.create` record in one
//! transaction; all or nothing when a row conflicts; statements chunked under the bind
//! limits; the audit chain verifies afterwards.

use fedkey_store::StoreError;
use fedkey_store::scim::{KeysInUse, ListQuery, ResourceKey, ResourceWrite, max_binds};
use serde_json::json;
use sqlx::Row;

use super::{Kind, actor, count_action, env, head_seq, verify};

fn user(i: usize, emails: usize) -> ResourceWrite {
    let name = format!("User{i:05}@Bulk.test");
    let emails: Vec<String> = (0..emails).map(|k| format!("u{i}.{k}@bulk.test")).collect();
    ResourceWrite {
        resource_type: "User",
        name_key: name.to_lowercase(),
        external_id: Some(format!("E{i}")),
        body: json!({
            "userName": name, "externalId": format!("E{i}"), "active": i.is_multiple_of(2),
            "emails": emails.iter().map(|e| json!({"value": e})).collect::<Vec<_>>(),
        }),
        members: None,
        indexed: emails.into_iter().map(|e| ("emails.value".to_owned(), e)).collect(),
        changed: vec!["active".into(), "emails".into(), "externalId".into(), "userName".into()],
        known: None,
    }
}

fn group(name: &str, members: Vec<String>) -> ResourceWrite {
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

async fn users_in(s: &fedkey_store::Store, dir: &str) -> i64 {
    s.scim_list(dir, "User", &ListQuery { limit: 1, offset: 1, ..ListQuery::default() }).await.unwrap().0
}

async fn values_in(s: &fedkey_store::Store, dir: &str) -> i64 {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM scim_values WHERE directory_id = $1")
        .bind(dir.to_owned())
        .fetch_one(s.raw_for_tests().pool())
        .await
        .unwrap();
    row.try_get("n").unwrap()
}

/// What a batch leaves: users, indexed values, outbox rows, audit records.
async fn footprint(s: &fedkey_store::Store, dir: &str) -> (i64, i64, i64, i64) {
    (users_in(s, dir).await, values_in(s, dir).await, s.outbox_len().await.unwrap(), head_seq(s).await)
}

pub async fn bulk_create_writes_each_row_with_its_record(kind: Kind) {
    let e = env(kind).await;
    let (s, a) = (&e.store, actor());
    let dir = s.create_directory(&a, "acme").await.unwrap();
    let (outbox0, creates0) = (s.outbox_len().await.unwrap(), count_action(s, "scim.create").await);
    let ids = s.scim_create_many(&a, &dir, &[user(1, 1), user(2, 2), user(3, 0)]).await.unwrap();
    assert_eq!(ids.len(), 3);
    // Each is stored as a single create stores it, found by its typed keys.
    for (i, id) in [1, 2, 3].into_iter().zip(&ids) {
        let r = s.scim_get(&dir.id, "User", id).await.unwrap();
        assert_eq!((r.version, r.body["externalId"].clone()), (1, json!(format!("E{i}"))));
        let by_name = s.scim_find(&dir.id, "User", ResourceKey::Name(&format!("user{i:05}@bulk.test")), 2).await;
        assert_eq!(by_name.unwrap().iter().map(|r| &r.id).collect::<Vec<_>>(), [id]);
        let by_ext = s.scim_find(&dir.id, "User", ResourceKey::ExternalId(&format!("E{i}")), 2).await.unwrap();
        assert_eq!(by_ext.len(), 1);
    }
    assert_eq!(values_in(s, &dir.id).await, 3);
    // A group with members among them: its membership rows and the members' outbox rows.
    let team = s.scim_create_many(&a, &dir, &[group("Team", vec![ids[0].clone(), ids[1].clone()])]).await.unwrap();
    let team = s.scim_get(&dir.id, "Group", &team[0]).await.unwrap();
    assert_eq!(team.members.len(), 2);
    assert_eq!(s.outbox_len().await.unwrap(), outbox0 + 3 + 1 + 2);
    assert_eq!(count_action(s, "scim.create").await, creates0 + 4);
    // The typed lookup of keys in use: this directory and type only.
    let other = s.create_directory(&a, "globex").await.unwrap();
    s.scim_create_many(&a, &other, &[user(9, 0)]).await.unwrap();
    let found = s
        .scim_keys_in_use(&dir.id, "User", &["user00002@bulk.test", "user00009@bulk.test", "team"], &["E3", "E9"])
        .await
        .unwrap();
    let want = KeysInUse { names: ["user00002@bulk.test".to_owned()].into(), external_ids: ["E3".to_owned()].into() };
    assert_eq!(found, want);
    verify(s).await.unwrap();
}

pub async fn bulk_create_is_all_or_nothing(kind: Kind) {
    let e = env(kind).await;
    let (s, a) = (&e.store, actor());
    let dir = s.create_directory(&a, "acme").await.unwrap();
    s.scim_create(&a, &dir, user(5, 1)).await.unwrap();
    let before = footprint(s, &dir.id).await;
    // A taken userName in the middle of the batch, a duplicate within it, a group naming
    // a member that does not exist: each rolls back the whole batch.
    let mut taken = user(50, 1);
    taken.name_key = "user00005@bulk.test".into();
    let batches = [
        (vec![user(1, 1), taken, user(2, 1)], "conflict"),
        (vec![user(1, 1), user(2, 1), user(1, 2)], "conflict"),
        (vec![user(1, 1), group("Ghosts", vec!["no-such-id".into()])], "invalid"),
    ];
    for (batch, want) in batches {
        let r = s.scim_create_many(&a, &dir, &batch).await;
        let kind_ok = match want {
            "conflict" => matches!(r, Err(StoreError::Conflict(_))),
            _ => matches!(r, Err(StoreError::Invalid(_))),
        };
        assert!(kind_ok, "{want}: {r:?}");
        assert_eq!(footprint(s, &dir.id).await, before, "{want}: nothing of the batch stays");
    }
    // The same rows without the bad one go in, and the chain verifies.
    let ids = s.scim_create_many(&a, &dir, &[user(1, 1), user(2, 1)]).await.unwrap();
    assert_eq!(ids.len(), 2);
    let (users, values, outbox, seq) = footprint(s, &dir.id).await;
    assert_eq!((users, values, outbox, seq), (before.0 + 2, before.1 + 2, before.2 + 2, before.3 + 2));
    verify(s).await.unwrap();
}

pub async fn bulk_create_crosses_the_statement_chunks(kind: Kind) {
    let e = env(kind).await;
    let (s, a) = (&e.store, actor());
    let dir = s.create_directory(&a, "acme").await.unwrap();
    // More rows than one statement takes on either backend: resources bind 6 a row,
    // values 3 (two each here), outbox rows 4.
    let n = max_binds(s.raw_for_tests().backend) / 6 + 100;
    let writes: Vec<ResourceWrite> = (0..n).map(|i| user(i, 2)).collect();
    let before = footprint(s, &dir.id).await;
    let ids = s.scim_create_many(&a, &dir, &writes).await.unwrap();
    assert_eq!(ids.len(), n);
    let (users, values, outbox, seq) = footprint(s, &dir.id).await;
    assert_eq!(users - before.0, n as i64);
    assert_eq!(values - before.1, 2 * n as i64);
    assert_eq!(outbox - before.2, n as i64);
    assert_eq!(seq - before.3, n as i64, "one scim.create record per user");
    let last = s.scim_find(&dir.id, "User", ResourceKey::ExternalId(&format!("E{}", n - 1)), 2).await.unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].id, ids[n - 1]);
    let rep = verify(s).await.unwrap();
    assert_eq!(rep.records, seq);
}
