//! Rotation-engine persistence: policies, connectors, steps, leases (both backends).

use std::time::Duration;

use fedkey_core::rotation::RotationPolicy;
use fedkey_core::{Clock, KeyState, RotationKind, RotationStep, Scope, ScopeSet, Validation};
use fedkey_crypto::Secret;
use fedkey_store::StoreError;
use fedkey_store::ops::{Arrival, NewMaterial, UnwrapRefusal};
use serde_json::json;

use super::{Kind, actor, count_action, env, inbound, outbound, states, tref, verify};

fn policy(period: u64, overlap: u64) -> RotationPolicy {
    RotationPolicy {
        period: Duration::from_secs(period),
        overlap: Duration::from_secs(overlap),
        validation: Validation::FirstUse,
        ..RotationPolicy::default()
    }
}

pub async fn rotation_steps_persist_and_promote(kind: Kind) {
    let e = env(kind).await;
    let s = &e.store;
    let a = actor();
    let r = tref("acme", "entra");
    s.create_directory(&a, "acme").await.unwrap();
    let (_, _, k1) = s.create_trust(&a, inbound("acme", "entra")).await.unwrap();
    let k1 = k1.unwrap();
    let p = s.set_rotation_policy(&a, &r, policy(3600, 60)).await.unwrap();
    assert_eq!(p.next_rotation_at, Some(e.clock.now().saturating_add(Duration::from_secs(3600))));
    assert!(s.due_schedules(10).await.unwrap().is_empty());
    e.clock.advance(Duration::from_secs(3600));
    assert_eq!(s.due_schedules(10).await.unwrap(), vec![r.clone()]);

    let rot = s.start_rotation(&a, &r, RotationKind::Scheduled, None).await.unwrap();
    assert_eq!((rot.version, rot.step, rot.overlap), (2, RotationStep::Set, Duration::from_secs(60)));
    assert!(s.due_schedules(10).await.unwrap().is_empty(), "a trust with a rotation in progress is not due");
    // A second start is refused while one is in progress: never two pending versions.
    let err = s.start_rotation(&a, &r, RotationKind::Manual, None).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidState(_)), "{err:?}");
    assert_eq!(states(&s.list_keys(&r).await.unwrap()), vec![(1, KeyState::Current), (2, KeyState::Pending)]);

    // The staged key survives (encrypted) until the rotation ends, and authenticates.
    let staged = s.staged_key(&a, &rot).await.unwrap();
    assert_ne!(staged.expose(), k1.expose());
    assert!(e.auth_key("acme", &staged).await.is_ok(), "a staged version must work as soon as it is delivered");
    assert!(e.auth_key("acme", &k1).await.is_ok());

    let c = s
        .add_connector(&a, &r, "vault", "file", json!({"path": "/x"}), Some(Secret::new("cred".into())))
        .await
        .unwrap();
    assert!(s.add_connector(&a, &r, "vault", "file", json!({}), None).await.is_err(), "names are unique per trust");
    s.record_delivery(&a, &rot, &c, "written").await.unwrap();
    s.record_delivery(&a, &rot, &c, "written").await.unwrap();
    let rot = s.rotation_by_id(&rot.id).await.unwrap();
    assert_eq!(rot.deliveries.len(), 1, "deliveries are recorded once");
    assert_eq!(
        s.connector_credentials(&a, &s.list_connectors(&r).await.unwrap()[0]).await.unwrap().unwrap().expose(),
        "cred"
    );

    s.advance_rotation(&a, &rot, RotationStep::Set, RotationStep::Test, json!({})).await.unwrap();
    // A stale writer (another node that saw step `set`) cannot move it again.
    assert!(s.advance_rotation(&a, &rot, RotationStep::Set, RotationStep::Test, json!({})).await.is_err());
    let rot = s.rotation_by_id(&rot.id).await.unwrap();
    let retry_at = e.clock.now().saturating_add(Duration::from_secs(5));
    assert_eq!(s.fail_rotation_step(&a, &rot, "peer has not used the key", retry_at).await.unwrap(), 1);
    assert!(s.due_rotations(10).await.unwrap().is_empty(), "not due before the retry time");
    e.clock.advance(Duration::from_secs(5));
    let rot = s.due_rotations(10).await.unwrap().pop().unwrap();
    assert_eq!((rot.attempts, rot.last_error.as_deref()), (1, Some("peer has not used the key")));
    // The current version was never touched by the failure.
    assert_eq!(states(&s.list_keys(&r).await.unwrap()), vec![(1, KeyState::Current), (2, KeyState::Pending)]);

    s.advance_rotation(&a, &rot, RotationStep::Test, RotationStep::Finish, json!({})).await.unwrap();
    let rot = s.rotation_by_id(&rot.id).await.unwrap();
    s.finish_rotation(&a, &rot, false).await.unwrap();
    assert!(s.finish_rotation(&a, &rot, false).await.is_err(), "finishing twice is refused");
    let keys = s.list_keys(&r).await.unwrap();
    assert_eq!(states(&keys), vec![(1, KeyState::Previous), (2, KeyState::Current)]);
    assert!(keys[1].activated_at.is_some());
    assert!(s.staged_key(&a, &rot).await.is_err(), "the staged plaintext is erased at finish");
    assert!(e.auth_key("acme", &k1).await.is_ok(), "old key valid during the overlap");
    e.clock.advance(Duration::from_secs(61));
    assert!(e.auth_key("acme", &k1).await.is_err(), "old key refused after the overlap");
    assert!(e.auth_key("acme", &staged).await.is_ok());
    let done = s.latest_rotation(&r).await.unwrap().unwrap();
    assert_eq!(done.step, RotationStep::Done);
    assert!(!done.is_active());
    for action in ["rotation.start", "rotation.deliver", "rotation.step", "rotation.step_failed", "rotation.finish"] {
        assert!(count_action(s, action).await >= 1, "{action} audited");
    }
    verify(s).await.unwrap();
}

pub async fn rotation_cancel_and_emergency(kind: Kind) {
    let e = env(kind).await;
    let s = &e.store;
    let a = actor();
    let r = tref("acme", "entra");
    s.create_directory(&a, "acme").await.unwrap();
    let (_, _, k1) = s.create_trust(&a, inbound("acme", "entra")).await.unwrap();
    let k1 = k1.unwrap();
    let rot = s.start_rotation(&a, &r, RotationKind::Manual, Some(Duration::from_secs(30))).await.unwrap();
    let staged = s.staged_key(&a, &rot).await.unwrap();
    let canceled = s.cancel_rotation(&a, &r, "operator changed their mind").await.unwrap();
    assert_eq!(canceled.step, RotationStep::Canceled);
    assert!(e.auth_key("acme", &staged).await.is_err(), "a canceled version is revoked");
    assert!(e.auth_key("acme", &k1).await.is_ok(), "cancel leaves the current version alone");
    assert!(s.cancel_rotation(&a, &r, "again").await.is_err());

    let rot = s.start_rotation(&a, &r, RotationKind::Emergency, None).await.unwrap();
    assert_eq!(rot.overlap, Duration::ZERO);
    assert!(e.auth_key("acme", &k1).await.is_err(), "an emergency rotation revokes the old key at once");
    let keys = s.list_keys(&r).await.unwrap();
    assert_eq!(states(&keys), vec![(1, KeyState::Revoked), (2, KeyState::Revoked), (3, KeyState::Current)]);
    let k3 = s.staged_key(&a, &rot).await.unwrap();
    assert!(e.auth_key("acme", &k3).await.is_ok());
    s.finish_rotation(&a, &rot, false).await.unwrap();
    assert_eq!(states(&s.list_keys(&r).await.unwrap()).last(), Some(&(3, KeyState::Current)));

    // Outbound trusts do not rotate through the engine: the application issues their key.
    s.create_trust(&a, outbound("acme", "app", "k")).await.unwrap();
    let err = s.start_rotation(&a, &tref("acme", "app"), RotationKind::Manual, None).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert!(s.set_rotation_policy(&a, &tref("acme", "app"), policy(60, 1)).await.is_err());
    assert!(s.set_rotation_policy(&a, &r, policy(60, 60)).await.is_err(), "overlap must be shorter than the period");
    // A cron schedule decides the next start; a bad one is refused.
    let cron = RotationPolicy { schedule: Some("0 3 * * *".into()), ..policy(7 * 86400, 60) };
    let row = s.set_rotation_policy(&a, &r, cron).await.unwrap();
    let next = row.next_rotation_at.unwrap();
    assert!(next > e.clock.now() && next.0 - e.clock.now().0 <= 86_400_000_000);
    assert_eq!((next.0 / 1_000_000) % 86_400, 3 * 3600, "03:00 UTC");
    let bad = RotationPolicy { schedule: Some("61 * * * *".into()), ..policy(60, 1) };
    assert!(s.set_rotation_policy(&a, &r, bad).await.is_err());
    verify(s).await.unwrap();
}

pub async fn leases_exclude_other_owners(kind: Kind) {
    let e = env(kind).await;
    let s = &e.store;
    let ttl = Duration::from_secs(30);
    assert!(s.acquire_lease("rotation:x", "node-a", ttl).await.unwrap());
    assert!(!s.acquire_lease("rotation:x", "node-b", ttl).await.unwrap());
    assert!(s.acquire_lease("rotation:x", "node-a", ttl).await.unwrap(), "the owner renews");
    assert!(s.acquire_lease("rotation:y", "node-b", ttl).await.unwrap(), "leases are per name");
    e.clock.advance(Duration::from_secs(31));
    assert!(s.acquire_lease("rotation:x", "node-b", ttl).await.unwrap(), "an expired lease is taken over");
    assert!(!s.acquire_lease("rotation:x", "node-a", ttl).await.unwrap());
    s.release_lease("rotation:x", "node-a").await.unwrap();
    assert!(!s.acquire_lease("rotation:x", "node-a", ttl).await.unwrap(), "only the owner releases");
    s.release_lease("rotation:x", "node-b").await.unwrap();
    assert!(s.acquire_lease("rotation:x", "node-a", ttl).await.unwrap());
}

pub async fn wrapped_links_reveal_once(kind: Kind) {
    let e = env(kind).await;
    let s = &e.store;
    let a = actor();
    let r = tref("acme", "entra");
    s.create_directory(&a, "acme").await.unwrap();
    let (_, _, k1) = s.create_trust(&a, inbound("acme", "entra")).await.unwrap();
    let k1 = k1.unwrap();
    let link = s.wrap_key(&a, &r, 1, &k1, Duration::from_secs(600)).await.unwrap();
    assert!(link.token.expose().starts_with("fkw_"));
    let (got_ref, v, key) = s.unwrap_key(&a, link.token.expose()).await.unwrap().unwrap();
    assert_eq!((got_ref, v, key.expose()), (r.clone(), 1, k1.expose()));
    match s.unwrap_key(&a, link.token.expose()).await.unwrap() {
        Err(UnwrapRefusal::Reused { version: 1, .. }) => {}
        other => panic!("second use must be refused as a reuse, got {:?}", other.map(|x| x.1)),
    }
    assert_eq!(count_action(s, "wrap.reuse").await, 1);
    assert_eq!(s.unwrap_key(&a, "fkw_nope").await.unwrap().map(|x| x.1), Err(UnwrapRefusal::Unknown));

    let late = s.wrap_key(&a, &r, 1, &k1, Duration::from_secs(60)).await.unwrap();
    e.clock.advance(Duration::from_secs(61));
    assert_eq!(s.purge_expired_wraps().await.unwrap(), 1);
    assert!(matches!(s.unwrap_key(&a, late.token.expose()).await.unwrap(), Err(UnwrapRefusal::Expired { .. })));
    assert!(s.wrap_key(&a, &r, 1, &k1, Duration::ZERO).await.is_err());
    // Neither the key nor the link token is stored in clear.
    let dump: Vec<(Option<Vec<u8>>,)> =
        sqlx::query_as("SELECT envelope FROM wrapped_links").fetch_all(s.raw_for_tests().pool()).await.unwrap();
    assert!(dump.iter().all(|(e,)| e.is_none()), "envelopes are erased after use or expiry");
    verify(s).await.unwrap();
}

pub async fn trust_material_versions_and_replay(kind: Kind) {
    let e = env(kind).await;
    let s = &e.store;
    let a = actor();
    let r = tref("acme", "entra");
    s.create_directory(&a, "acme").await.unwrap();
    s.create_trust(&a, inbound("acme", "entra")).await.unwrap();
    let src = s.set_trust_source(&a, &r, json!({"jwks_url": "https://idp.example/keys"})).await.unwrap();
    assert_eq!(s.trust_sources().await.unwrap()[0].trust, src.trust);
    let now = e.clock.now();
    let v1 = s
        .record_material(
            &a,
            &r,
            NewMaterial {
                arrival: Arrival::Accepted,
                digest: "d1",
                material: &json!({"keys": ["a"]}),
                fetched_at: now,
                expires_at: None,
            },
        )
        .await
        .unwrap();
    let v2 = s
        .record_material(
            &a,
            &r,
            NewMaterial {
                arrival: Arrival::Accepted,
                digest: "d2",
                material: &json!({"keys": ["a", "b"]}),
                fetched_at: now,
                expires_at: None,
            },
        )
        .await
        .unwrap();
    let v3 = s
        .record_material(
            &a,
            &r,
            NewMaterial {
                arrival: Arrival::Held,
                digest: "d3",
                material: &json!({"keys": ["z"]}),
                fetched_at: now,
                expires_at: None,
            },
        )
        .await
        .unwrap();
    assert_eq!((v1, v2, v3), (1, 2, 3));
    let st = |vs: &[fedkey_store::ops::MaterialVersion]| {
        vs.iter().map(|v| (v.version, v.status.clone())).collect::<Vec<_>>()
    };
    assert_eq!(
        st(&s.material_versions(&r, 10).await.unwrap()),
        vec![(3, "pending".into()), (2, "current".into()), (1, "superseded".into())]
    );
    let approved = s.approve_material(&a, &r).await.unwrap();
    assert_eq!((approved.version, approved.status.as_str()), (3, "current"));
    assert!(s.approve_material(&a, &r).await.is_err(), "nothing pending any more");
    s.record_material(
        &a,
        &r,
        NewMaterial { arrival: Arrival::Held, digest: "d4", material: &json!({}), fetched_at: now, expires_at: None },
    )
    .await
    .unwrap();
    s.reject_material(&a, &r).await.unwrap();
    s.expire_material(&a, &r, "no refresh before the hard expiry").await.unwrap();
    assert_eq!(st(&s.material_versions(&r, 2).await.unwrap()), vec![(4, "rejected".into()), (3, "expired".into())]);
    for action in ["material.accept", "material.hold", "material.approve", "material.reject", "material.expire"] {
        assert!(count_action(s, action).await >= 1, "{action} audited");
    }
    // JWT replay: a jti is accepted once until it expires.
    let trust_id = s.trust(&r).await.unwrap().id;
    let exp = now.saturating_add(Duration::from_secs(60));
    assert!(s.remember_jti(&trust_id, "jti-1", exp).await.unwrap());
    assert!(!s.remember_jti(&trust_id, "jti-1", exp).await.unwrap(), "replay refused");
    assert!(s.remember_jti(&trust_id, "jti-2", exp).await.unwrap());
    e.clock.advance(Duration::from_secs(61));
    let later = e.clock.now().saturating_add(Duration::from_secs(60));
    assert!(s.remember_jti(&trust_id, "jti-1", later).await.unwrap(), "forgotten after expiry");
    verify(s).await.unwrap();
}

pub async fn trust_scopes_change_applies_to_live_keys(kind: Kind) {
    let e = env(kind).await;
    let s = &e.store;
    let a = actor();
    let r = tref("acme", "entra");
    s.create_directory(&a, "acme").await.unwrap();
    let (_, _, k1) = s.create_trust(&a, inbound("acme", "entra")).await.unwrap();
    let k1 = k1.unwrap();
    assert!(e.auth_key("acme", &k1).await.unwrap().scopes.contains(Scope::UsersWrite));
    let narrowed = ScopeSet::parse_list(&["users:read"]).unwrap();
    let t = s.set_trust_scopes(&a, &r, narrowed.clone()).await.unwrap();
    assert_eq!(t.scopes, narrowed);
    let p = e.auth_key("acme", &k1).await.unwrap();
    assert!(p.scopes.contains(Scope::UsersRead) && !p.scopes.contains(Scope::UsersWrite), "applies at once");
    assert_eq!(s.list_keys(&r).await.unwrap()[0].scopes, narrowed);
    s.create_trust(&a, outbound("acme", "app", "k")).await.unwrap();
    assert!(
        s.set_trust_scopes(&a, &tref("acme", "app"), narrowed).await.is_err(),
        "inbound scopes on an outbound trust"
    );
    assert_eq!(count_action(s, "trust.scopes").await, 1);
}

/// A user's groups are read on every GET of the user, in the same statement: the lookup
/// must start from the member-side index even without planner statistics (no ANALYZE), or
/// it scans every membership of the directory; and the groups come back sorted by id with
/// their display names.
pub async fn user_groups_lookup_uses_the_member_index(kind: Kind) {
    use super::outbox::{group, user};
    let e = env(kind).await;
    let s = &e.store;
    let a = actor();
    let dir = s.create_directory(&a, "acme").await.unwrap();
    let d = dir.id.clone();
    let alice = s.scim_create(&a, &dir, user("alice", true)).await.unwrap();
    let bob = s.scim_create(&a, &dir, user("bob", true)).await.unwrap();
    let zeta = s.scim_create(&a, &dir, group("zeta", vec![alice.id.clone()])).await.unwrap();
    let alpha = s.scim_create(&a, &dir, group("alpha", vec![alice.id.clone(), bob.id.clone()])).await.unwrap();
    let filler = match kind {
        Kind::Sqlite => format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) \
             INSERT INTO scim_members SELECT '{d}', 'g' || (i % 50), 'u' || i, 'User' FROM n;"
        ),
        Kind::Postgres => format!(
            "INSERT INTO scim_members SELECT '{d}', 'g' || (i % 50), 'u' || i, 'User' FROM generate_series(1, 5000) i;"
        ),
    };
    e.exec(&filler).await;
    if kind == Kind::Sqlite {
        let sql = format!(
            "EXPLAIN QUERY PLAN SELECT {} FROM scim_resources r WHERE r.directory_id = $1 AND r.id = $2",
            fedkey_store::scim::read_columns(s.raw_for_tests().backend, "User")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(d.clone())
            .bind("u77")
            .fetch_all(s.raw_for_tests().pool())
            .await
            .unwrap();
        let plan: Vec<String> = rows.iter().map(|r| sqlx::Row::try_get::<String, _>(r, "detail").unwrap()).collect();
        let members = plan.iter().find(|l| l.contains(" m ")).unwrap();
        assert!(members.contains("scim_members_member") && members.contains("member_id=?"), "{plan:?}");
    }
    let mut expected = vec![(alpha.id.clone(), "alpha"), (zeta.id.clone(), "zeta")];
    expected.sort();
    let got = s.scim_get(&d, "User", &alice.id).await.unwrap();
    let got: Vec<(String, &str)> =
        got.groups.iter().map(|g| (g.value.clone(), g.display.as_deref().unwrap_or("-"))).collect();
    assert_eq!(got, expected);
    let listed =
        s.scim_list(&d, "User", &fedkey_store::scim::ListQuery { limit: 10, ..Default::default() }).await.unwrap().1;
    let bob_groups: Vec<&str> =
        listed.iter().find(|r| r.id == bob.id).unwrap().groups.iter().map(|g| g.value.as_str()).collect();
    assert_eq!(bob_groups, vec![alpha.id.as_str()]);
    // A group's members come in the same statement: sorted by id, typed, with the
    // member's userName or (a nested group) displayName.
    let outer = s.scim_create(&a, &dir, group("outer", vec![zeta.id.clone(), bob.id.clone()])).await.unwrap();
    let got = s.scim_get(&d, "Group", &outer.id).await.unwrap();
    let members: Vec<(String, String, Option<String>)> =
        got.members.iter().map(|m| (m.value.clone(), m.kind.clone(), m.display.clone())).collect();
    let mut expected = vec![
        (zeta.id.clone(), "Group".to_owned(), Some("zeta".to_owned())),
        (bob.id.clone(), "User".to_owned(), Some("bob".to_owned())),
    ];
    expected.sort();
    assert_eq!(members, expected);
    let zeta_groups: Vec<String> =
        s.scim_get(&d, "Group", &zeta.id).await.unwrap().groups.into_iter().map(|g| g.value).collect();
    assert_eq!(zeta_groups, vec![outer.id.clone()]);
    assert!(s.scim_get(&d, "Group", &alpha.id).await.unwrap().groups.is_empty());
    assert!(s.scim_get(&d, "User", &bob.id).await.unwrap().members.is_empty());
}

/// A lookup by id (GET, a delete's version check, a replace) goes through the primary key
/// even before the database has statistics (a directory's first load; PostgreSQL: the
/// generic plan it caches), and a lookup with the wrong type finds nothing.
pub async fn lookups_by_id_use_the_primary_key(kind: Kind) {
    use super::outbox::{group, user};
    let e = env(kind).await;
    let s = &e.store;
    let a = actor();
    let dir = s.create_directory(&a, "acme").await.unwrap();
    let d = dir.id.clone();
    let filler = match kind {
        Kind::Sqlite => format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) \
             INSERT INTO scim_resources (directory_id, id, resource_type, version, created_at, updated_at, name_key, body, body_ci) \
             SELECT '{d}', 'u' || i, 'User', 1, i, i, 'user' || i, '{{}}', '{{}}' FROM n;"
        ),
        Kind::Postgres => format!(
            "INSERT INTO scim_resources (directory_id, id, resource_type, version, created_at, updated_at, name_key, body, body_ci) \
             SELECT '{d}', 'u' || i, 'User', 1, i, i, 'user' || i, '{{}}', '{{}}' FROM generate_series(1, 5000) i;"
        ),
    };
    e.exec(&filler).await;
    let plans = s.scim_by_id_plans(&d, "u77").await.unwrap();
    // Every step that reads scim_resources (the resource, and a user's groups).
    let on_resources: Vec<&String> = match kind {
        Kind::Sqlite => plans.iter().filter(|l| l.starts_with("SEARCH") || l.starts_with("SCAN")).collect(),
        Kind::Postgres => plans.iter().filter(|l| l.contains("Scan") && l.contains(" on scim_resources")).collect(),
    };
    let on_resources: Vec<&String> = on_resources.into_iter().filter(|l| !l.contains("scim_members")).collect();
    assert!(on_resources.len() >= 3, "{plans:?}");
    for l in on_resources {
        let by_key = match kind {
            Kind::Sqlite => l.contains("(directory_id=? AND id=?)"),
            Kind::Postgres => l.contains("scim_resources_pkey"),
        };
        assert!(by_key, "{l} in {plans:?}");
        assert!(!l.contains("external_id") && !l.contains("created"), "{l} in {plans:?}");
    }
    // So is a list whose filter pins the id (Entra ID's `id eq … and members eq …`).
    let rt = fedkey_scim::schema::resource_type("User").unwrap();
    let f = fedkey_scim::filter::parse(r#"id eq "u77" and active eq true"#).unwrap();
    let frag = s.scim_filter_sql(rt, &f).unwrap();
    assert!(frag.pins_id);
    let q = fedkey_store::scim::ListQuery { filter: Some(frag), limit: 10, ..Default::default() };
    let plans = s.scim_list_plan(&d, "User", &q).await.unwrap();
    let scans: Vec<&String> = match kind {
        Kind::Sqlite => plans.iter().filter(|l| l.starts_with("SEARCH r ") || l.starts_with("SCAN r")).collect(),
        Kind::Postgres => plans.iter().filter(|l| l.contains("Scan") && l.contains("on scim_resources r")).collect(),
    };
    assert_eq!(scans.len(), 2, "page and count: {plans:?}");
    for l in scans {
        let by_key = match kind {
            Kind::Sqlite => l.contains("(directory_id=? AND id=?)"),
            Kind::Postgres => l.contains("scim_resources_pkey"),
        };
        assert!(by_key, "{l} in {plans:?}");
    }
    let found = s.scim_list(&d, "User", &q).await.unwrap();
    assert_eq!(found.0, 0, "u77 is not active: the rest of the filter still applies");
    // The type is still checked, now outside the WHERE.
    let alice = s.scim_create(&a, &dir, user("alice", true)).await.unwrap();
    let team = s.scim_create(&a, &dir, group("team", vec![alice.id.clone()])).await.unwrap();
    assert!(matches!(s.scim_get(&d, "Group", &alice.id).await, Err(StoreError::NotFound(_))));
    assert!(matches!(s.scim_get(&d, "User", &team.id).await, Err(StoreError::NotFound(_))));
    assert!(matches!(s.scim_delete(&a, &dir, "Group", &alice.id, None).await, Err(StoreError::NotFound(_))));
    let as_group = group("alice", vec![]);
    let replaced = s.scim_replace(&a, &dir, &alice.id, None, as_group).await;
    assert!(matches!(replaced, Err(StoreError::PreconditionFailed(_) | StoreError::NotFound(_))), "{replaced:?}");
    assert_eq!(s.scim_get(&d, "User", &alice.id).await.unwrap().version, 1, "a user is not replaced as a group");
    let rt = fedkey_scim::schema::resource_type("Group").unwrap();
    let f = fedkey_scim::filter::parse(&format!(r#"id eq "{}""#, alice.id)).unwrap();
    let frag = s.scim_filter_sql(rt, &f).unwrap();
    let q = fedkey_store::scim::ListQuery { filter: Some(frag), limit: 10, ..Default::default() };
    assert_eq!(s.scim_list(&d, "Group", &q).await.unwrap().0, 0, "a user's id lists no group");
    let q = fedkey_store::scim::ListQuery { filter: q.filter, limit: 10, ..Default::default() };
    assert_eq!(s.scim_list(&d, "User", &q).await.unwrap().0, 1);
}

/// An emergency rotation supersedes a rotation in progress; a leak report applies the trust's
/// policy and never stores the candidate; `pending_auth delivered` holds a pending version
/// back until its rotation has left step `set`.
pub async fn leak_reports_and_pending_auth(kind: Kind) {
    use fedkey_core::{LeakPolicy, PendingAuth};
    use fedkey_store::auth::AuthFailure;
    use fedkey_store::ops::{LeakAction, LeakCandidate};
    let e = env(kind).await;
    let s = &e.store;
    let a = actor();
    let r = tref("acme", "entra");
    s.create_directory(&a, "acme").await.unwrap();
    let (_, _, k1) = s.create_trust(&a, inbound("acme", "entra")).await.unwrap();
    let k1 = k1.unwrap();
    let stalled = s.start_rotation(&a, &r, RotationKind::Manual, None).await.unwrap();
    let k2 = s.staged_key(&a, &stalled).await.unwrap();
    assert!(e.auth_key("acme", &k2).await.is_ok(), "staged (default): a pending version authenticates");
    let err = s.start_rotation(&a, &r, RotationKind::Manual, None).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidState(_)), "{err:?}");
    let rot = s.start_rotation(&a, &r, RotationKind::Emergency, None).await.unwrap();
    assert_eq!(rot.version, 3);
    assert_eq!(
        states(&s.list_keys(&r).await.unwrap()),
        vec![(1, KeyState::Revoked), (2, KeyState::Revoked), (3, KeyState::Current)]
    );
    let old = s.rotation_by_id(&stalled.id).await.unwrap();
    assert_eq!(
        (old.step, old.last_error.as_deref()),
        (RotationStep::Canceled, Some("superseded by an emergency rotation"))
    );
    assert!(e.auth_key("acme", &k1).await.is_err());
    assert!(e.auth_key("acme", &k2).await.is_err());

    // A report of the current key under the default policy (rotate) supersedes again.
    let k3 = s.staged_key(&a, &rot).await.unwrap();
    let c = LeakCandidate { token: k3.expose(), location: "https://paste.example/1", reporter: "report" };
    let f = s.report_leak(&a, &c).await.unwrap();
    assert_eq!((f.ours, f.action, f.version), (true, LeakAction::Rotated, Some(3)));
    assert_eq!(states(&s.list_keys(&r).await.unwrap()).last(), Some(&(4, KeyState::Current)));
    let again = s.report_leak(&a, &c).await.unwrap();
    assert_eq!(again.action, LeakAction::AlreadyDead);
    let mut bad = k1.expose().to_owned();
    let last = if bad.ends_with('0') { '1' } else { '0' };
    bad.pop();
    bad.push(last);
    let f = s.report_leak(&a, &LeakCandidate { token: &bad, location: "x", reporter: "report" }).await.unwrap();
    assert_eq!((f.ours, f.action), (false, LeakAction::None));
    // Policy revoke: that version only.
    let t = s.set_trust_leak_settings(&a, &r, Some(LeakPolicy::Revoke), None).await.unwrap();
    assert_eq!(t.leak_policy(), LeakPolicy::Revoke);
    let rot4 = s.latest_rotation(&r).await.unwrap().unwrap();
    let k4 = s.staged_key(&a, &rot4).await.unwrap();
    let f = s.report_leak(&a, &LeakCandidate { token: k4.expose(), location: "y", reporter: "report" }).await.unwrap();
    assert_eq!(f.action, LeakAction::Revoked);
    assert_eq!(states(&s.list_keys(&r).await.unwrap()).last(), Some(&(4, KeyState::Revoked)));
    assert_eq!(count_action(s, "leak.report").await, 4);
    let all = s.audit_records(&fedkey_store::audit::AuditFilter { limit: 10_000, ..Default::default() }).await.unwrap();
    for rec in &all {
        for t in [k1.expose(), k3.expose(), k4.expose(), bad.as_str()] {
            assert!(!rec.details.contains(t), "a candidate in audit record {}", rec.seq);
        }
    }
    // An outbound trust can only report.
    s.create_trust(&a, outbound("acme", "app", "k")).await.unwrap();
    assert!(s.set_trust_leak_settings(&a, &tref("acme", "app"), Some(LeakPolicy::Rotate), None).await.is_err());

    // pending_auth delivered: refused until the rotation leaves `set`.
    s.cancel_rotation(&a, &r, "test").await.ok();
    s.set_trust_leak_settings(&a, &r, None, Some(PendingAuth::Delivered)).await.unwrap();
    let rot5 = s.start_rotation(&a, &r, RotationKind::Manual, None).await.unwrap();
    let k5 = s.staged_key(&a, &rot5).await.unwrap();
    assert_eq!(e.auth_key("acme", &k5).await.unwrap_err(), AuthFailure::NotDelivered);
    s.advance_rotation(&a, &rot5, RotationStep::Set, RotationStep::Test, json!({})).await.unwrap();
    assert!(e.auth_key("acme", &k5).await.is_ok(), "every connector confirmed it");
    verify(s).await.unwrap();
}
